"""`python -m services.question_gen`: serve the question service."""

from services.question_gen.config import Settings
from services.servicekit.serve import serve

if __name__ == "__main__":
    serve("services.question_gen.main:create_app", Settings())
