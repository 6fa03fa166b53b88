"""Background jobs: rule imports from the web and large sandbox files.

The queue is django-tasks with its database backend (``django_tasks_db``): the web enqueues
:func:`catalog.jobs.tasks.run_job` and a ``manage.py db_worker`` process runs it. Our
:class:`~catalog.jobs.models.Job` row sits beside the task result and holds what people see:
status, progress, the owner, the upload, the result summary, a heartbeat and a cancel flag.

- :mod:`catalog.jobs.models`    the Job row
- :mod:`catalog.jobs.services`  create / cancel / sweep jobs; progress, heartbeat, cancel checks
- :mod:`catalog.jobs.tasks`     the one task the worker runs
- :mod:`catalog.jobs.imports`   an uploaded rule archive imported as a job
- :mod:`catalog.jobs.sandbox`   a large ``.evtx``/``.jsonl`` evaluated as a job, its result files
- :mod:`catalog.jobs.views`     the status/result page and the CSV/JSON exports
"""
