from {{ cookiecutter.package }} import create_app

app = create_app()
