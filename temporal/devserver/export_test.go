package devserver

// StartPicking is Start with the internal services' ports chosen by pick,
// so that a test can hand the server a port that is already taken.
var StartPicking = start
