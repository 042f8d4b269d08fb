//go:build soak

package main

// go test -tags soak -run TestCrash -v -timeout 30m ./cmd/vitalmq: the long crash test.
func init() { crashCyclesDefault = 100 }
