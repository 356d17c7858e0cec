"""The API's routers, one module per area; ``services.http.app.ROUTERS`` lists them."""
