// Package tests holds orderflow's end-to-end and platform tests. They run
// against the real stack — the embedded Temporal server, a private
// PostgreSQL from the machine's binaries and the embedded NATS JetStream
// server — which the stacktest subpackage starts once per test package.
// The apptest subpackage runs the orderflow binary on that stack, and on
// its own embedded defaults for TestDevOnEmbeddedDefaults, which is `make
// run` as a new user meets it.
// There is no code here to import: only the tests, in package tests_test.
package tests
