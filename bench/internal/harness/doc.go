// Package harness is one measured run of bench, in the process that makes
// it: the heap under one policy (this allocator, or glibc's malloc), what
// samples it while the run goes, and the Result the run fills in. The
// workloads and the trace replay run on it; the command starts each run
// in a child process of its own (package child) and gathers the Results.
package harness
