"""HTTP plumbing shared by the API (app/) and the console (console/): where a request finds the
services, reading a body within its limit, and the authentication throttle. Its own package below
both, so the console never imports the app that mounts it."""
