//go:build !race

package alloc_test

const raceBuild = false
