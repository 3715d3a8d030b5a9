"""The front doors: one per public wire format a client may speak.

Each translates its request into one canonical request (`providers/canonical.py`) for the
gateway, and the gateway's answer (our OpenAI JSON or stream) back into its own response, stream
events and error shape. A front door knows no upstream's format; an upstream adapter
(`providers/`) knows no front door. Today: OpenAI Chat Completions and Embeddings
(`openai_chat`), Moderations (`openai_moderations`), rerank (`rerank`), Images
(`openai_images`, with `multipart` for edits' forms), the Audio API (`audio`, its forms read by
`multipart_form`), Anthropic Messages (`anthropic_messages`), OpenAI Responses (`responses`).
Shared by the doors: `door.py` (the `FrontDoor` record the app mounts on its path),
`json_body.py` (the body as a JSON object) and `event_stream.py` (our stream turned into a
door's named events).
"""
