package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openapiYAML is the API's contract, served as written so that what
// clients download is exactly what the route test checks.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapi serves the OpenAPI document.
func (s *Server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", openapiYAML)
}
