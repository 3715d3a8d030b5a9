// The Vercel AI SDK's default OpenAI provider against a running gateway, for
// tests/e2e/test_vercel_ai_sdk.py. `createOpenAI({ baseURL, apiKey })(modelId)` is the provider's
// default model, which calls the Responses API (`POST {baseURL}/responses`); the SDK checks every
// response and stream chunk against its own schemas, and what fails them is reported here.
//
// Usage: node clients/vercel-ai.mjs BASE_URL API_KEY MODEL CASE PROMPT
//   text:          generateText, then streamText
//   tools:         generateText, then streamText, each offering a tool the model calls, run to the
//                  answer after the tool's result (two requests each)
//   conversation:  a second turn after the first's response messages, with `store: false` (the
//                  gateway keeps no responses, so the items are sent again rather than referenced),
//                  then the same second turn with the SDK's default `store`
// Prints one JSON object: for each call its text, finish reason, usage, warnings, the response id
// of every request it made and the errors the SDK raised or streamed.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, modelId, which, prompt] = process.argv.slice(2);
const model = createOpenAI({ baseURL, apiKey })(modelId);
const weather = tool({
  description: "The weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => `sunny in ${city}`,
});

function summary(result, usage, warnings, errors) {
  return {
    text: result.text,
    finishReason: result.finishReason,
    usage,
    warnings: warnings ?? [],
    responseIds: result.steps.map((step) => step.response.id),
    toolResults: result.steps.flatMap((step) => step.toolResults.map((r) => r.output)),
    omitted: result.steps.map((step) => step.response.headers?.["x-nemo-omitted"] ?? null),
    errors,
  };
}

async function generate(options) {
  try {
    const result = await generateText({ model, maxRetries: 0, ...options });
    return { ...summary(result, result.totalUsage, result.warnings, []), messages: result.response.messages };
  } catch (error) {
    return { errors: [String(error)], status: error.statusCode ?? null, body: error.responseBody ?? null };
  }
}

async function stream(options) {
  const errors = [];
  const result = streamText({ model, maxRetries: 0, ...options, onError: ({ error }) => errors.push(String(error)) });
  const parts = [];
  for await (const part of result.fullStream) {
    parts.push(part.type);
    if (part.type === "error") errors.push(String(part.error));
  }
  const steps = await result.steps;
  const done = { text: await result.text, finishReason: await result.finishReason, steps };
  return { ...summary(done, await result.totalUsage, await result.warnings, errors), parts };
}

const out = {};
if (which === "text") {
  out.generate = await generate({ prompt });
  out.stream = await stream({ prompt });
} else if (which === "tools") {
  const options = { prompt, tools: { weather }, stopWhen: stepCountIs(3) };
  out.generate = await generate(options);
  out.stream = await stream(options);
} else if (which === "conversation") {
  const first = await generate({ prompt });
  const messages = [{ role: "user", content: prompt }, ...(first.messages ?? []), { role: "user", content: "And again." }];
  out.first = first;
  out.stateless = await generate({ messages, providerOptions: { openai: { store: false } } });
  out.stored = await generate({ messages });
} else {
  throw new Error(`unknown case ${which}`);
}
for (const call of Object.values(out)) delete call.messages;
process.stdout.write(JSON.stringify(out) + "\n");
