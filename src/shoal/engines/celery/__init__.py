"""The cluster engine: the same pipelines on Celery workers over Redis or RabbitMQ.

`shoal worker` hosts a supervisor of local worker processes behind a Celery worker; `shoal run
--engine celery` sends chunks as Celery tasks to the queue of its code version and watches them,
so a lost worker's chunks are sent again within seconds, not after a broker's visibility timeout.
"""
