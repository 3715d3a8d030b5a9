"""Anthropic's Messages API (`POST /v1/messages`) as a front door: `request` and `params` turn a
Messages body into the canonical chat body, `reply` and `stream` turn our answer into a message
or Anthropic's stream events, and `serve` is the door itself (and its error shape)."""
