//go:build !race

package tests_test

// raceDetector: the tests run without the race detector.
const raceDetector = false
