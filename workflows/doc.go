// Package workflows holds the order workflow: the orchestration of one order
// inside the order bounded context, from placement to completion or
// compensation. Its code is deterministic — it reads time only through
// workflow.Now, waits only through workflow timers and Await, and does all
// I/O in activities — so that Temporal can replay it from its history.
//
// Changes to the command sequence of running workflows go through
// workflow.GetVersion; the replay tests in tests/ fail when one does not.
package workflows
