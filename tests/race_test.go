//go:build race

package tests_test

// raceDetector: the tests run with the race detector (make race), which
// slows the Temporal server in the test process several times over.
const raceDetector = true
