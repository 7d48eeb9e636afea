"""The paper's crowd click-annotation tool (Bearman et al. 2016, §3 and Fig. 3), with its gold-image
quality control: `python -m pointseg_jax.annotate serve --images DIR --gold FILE --db FILE`.

  db.py      the project in SQLite: tasks, annotators, idempotent answers, gold check on finish
  qc.py      gold boxes, the paper's acceptance rule (>= 8 of 10 gold images right), and how much
             gold makes the check meaningful (its false-pass probability)
  blind.py   every image served re-encoded with fresh noise: gold images are not known by bytes
  server.py  the web app (Starlette): routes, tokens, security headers, error bodies
  schemas.py the typed request bodies (pydantic): any bad body is a 4xx
  runner.py  serving it: uvicorn with header/body/idle deadlines, connection limits, workers
  dashboard.py  the organiser's campaign numbers (progress, gold accuracy, time, flags)
  report.py  seconds per image per task type next to the paper's numbers
  export.py  accepted clicks -> click JSON (the format the data builders read), with the classes
             each image was asked about
  static/    the pages (annotation, dashboard): vanilla HTML/CSS/JS from the package, work offline
See docs/annotate.md.
"""
