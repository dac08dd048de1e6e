"""The web application (`tagger serve`): the HTTP API for web backends, behind API tokens with roles."""
