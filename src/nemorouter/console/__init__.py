"""The web console under /console: server-rendered pages (Jinja2, autoescaped) for customers
and for the operator, with CSS, JS and charts served by the gateway itself (no CDN, no build
step). The pages add no business rules: they call the same services as the admin and
management APIs."""
