//go:build race

package test

// raceEnabled is true when the tests run with -race; distgate is then built
// with the detector too.
const raceEnabled = true
