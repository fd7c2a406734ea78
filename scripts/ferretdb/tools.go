//go:build tools

// Package tools pins FerretDB v1 so `go build` can produce the test database
// binary from the Go module proxy. FerretDB is not the main module here, which
// skips its build/version/version.txt check (not shipped in the module zip).
package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
