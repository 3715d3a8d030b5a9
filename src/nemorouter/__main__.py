"""`python -m nemorouter` is the `nemorouter` command."""

from nemorouter.cli.main import main

main()
