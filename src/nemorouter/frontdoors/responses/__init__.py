"""The front door of OpenAI's Responses API (`POST /v1/responses`), around the canonical chat request.

`request` turns a Responses body into an OpenAI chat body (what every upstream adapter
translates from); `reply` turns our chat.completion into a Response object; `stream` turns our
chat chunks into the Responses event sequence. Nothing here knows an upstream's format.
"""
