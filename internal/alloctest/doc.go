// Package alloctest holds the test helpers of every package of this
// module, written once: the fill/check pattern that proves no two live
// blocks overlap, the table of allocator configurations the tests run
// under, the process's minor-fault counter, whether
// the always-on checks are compiled in, and the operation-stream model
// that the rapid state machine, the fuzzer and the bench's soak (one model
// a goroutine over a shared allocator) all drive.
//
// It imports neither the root package nor the layers below it, so the
// internal tests of any package can use it: a configuration is a Variant
// (plain names and numbers) that the root package's tests turn into an
// alloc.Config, and the model drives anything with the Allocator's
// methods. It does not import testing, so that the soak, a command, can
// use it.
package alloctest
