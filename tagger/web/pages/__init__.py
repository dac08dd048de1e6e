"""The review pages: tags, the images suggested for a tag (best first), one image; accept or reject each
suggestion with mouse or keyboard, or accept everything above a probability. Server-rendered (Jinja2,
escaped), a few lines of inline script for the keyboard, no build step.

Every decision is a label (who, when, accepted or rejected) that `tagger train --labels db` learns from.
One router per noun, as FastAPI's "Bigger Applications": `login` (log in and out), `tags` (tags, the
images of a tag, one image, decisions, thumbnails), `jobs` and `models`; what they share is in `shared`.
"""

from tagger.web.pages import jobs, login, models, tags

ROUTERS = (login.router, tags.router, jobs.router, models.router)  # the order the routes were declared in
