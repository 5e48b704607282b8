"""Operations: the executor a deployment uses, `b2cal serve`, and the Celery worker app.

Nothing here is imported by the code location unless a deployment selects it
(``B2CAL_EXECUTOR=celery``), so the quickstart needs neither Celery nor a broker.
"""
