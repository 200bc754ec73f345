"""The ASGI application uvicorn serves (`api.asgi:app`)."""

from api.main import create_app

app = create_app()
