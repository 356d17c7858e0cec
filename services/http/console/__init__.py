"""The console page, served by ``services/http/routes/console.py``."""
