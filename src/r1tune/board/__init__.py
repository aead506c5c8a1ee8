"""The web board behind `r1tune board` (the flow is recipes/board.py): one page over a runs folder.

    paths.py   every path a request names, resolved inside the runs folder (or refused)
    jobs.py    detached child processes (`python -m r1tune.cli …`), job.json, status, stop, resume, metrics
    forms.py   what the page's forms send → validated configs (r1tune.config's schema classes) → job commands
    chat.py    one loaded engine (serve/engine.py) streaming reasoning and answer apart
    guard.py   Host check, API key, CSRF token, content types and body sizes, before any route runs
    i18n.py    the page's strings in English and Chinese
    app.py     the FastAPI routes; the page, its script and style are resources/board/
"""
