from my_service import create_app

app = create_app()
