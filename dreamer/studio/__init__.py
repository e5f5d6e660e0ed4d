"""`dreamvideo studio FILM_OR_FRAMES`: find a film's dream by looking, in a web page, then
render it.

A local web page served by uvicorn (Starlette): the film's frames with a scrubber, the
settings made from the settings schema, a frame dreamed at a preview width with each octave
shown as it completes, a stretch of frames played as a loop with its flicker, a history of
previews, a `--params` TOML that reproduces the previewed frame, and stage 2 and 3 in the
background. Needs the optional extra: pip install 'dreamer[studio]'.

The layer above every other (nothing imports it but dreamvideo's lazy dispatch):

- film.py: the film's folders (frames, dreams, the studio's own), stage 1 with its
  progress, frames and thumbnails, and the guard on every path served;
- form.py: the settings schema as the page's widgets, the page's values as a DreamConfig,
  the TOML and the command lines, the schedules' curves;
- jobs.py: the queue (one dream at a time per device) and its jobs: a preview, a stretch,
  a layer sheet, a render;
- app.py: the Starlette app and its token; cli.py: the command.
"""
