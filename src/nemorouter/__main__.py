"""`python -m nemorouter` is the `nemorouter` command."""

from nemorouter.cli.entry import main

main()
