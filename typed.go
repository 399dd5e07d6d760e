package alloc

import (
	"fmt"
	"reflect"
	"sync"
	"unsafe"
)

// pointerFree caches, per type, whether it holds no Go pointers.
var pointerFree sync.Map // reflect.Type -> bool

func checkType[T any]() error {
	t := reflect.TypeFor[T]()
	ok, found := pointerFree.Load(t)
	if !found {
		ok = !hasPointers(t)
		pointerFree.Store(t, ok)
	}
	if !ok.(bool) {
		return fmt.Errorf("%w: %v", ErrPointerType, t)
	}
	return nil
}

// hasPointers reports whether a value of type t holds anything the garbage
// collector would have to follow.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	}
	return true // pointers, slices, strings, maps, channels, funcs, interfaces, unsafe.Pointer
}

// NewObject returns a zeroed T in a's memory. T must hold no Go pointers
// (ErrPointerType otherwise). Give it back with FreeObject.
func NewObject[T any](a *Allocator) (*T, error) {
	if err := checkType[T](); err != nil {
		return nil, err
	}
	b, err := a.Calloc(int(unsafe.Sizeof(*new(T))))
	if err != nil {
		return nil, err
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(b))), nil
}

// FreeObject gives back an object from NewObject. FreeObject(a, nil) does
// nothing.
func FreeObject[T any](a *Allocator, p *T) error {
	if p == nil {
		return nil
	}
	if err := checkType[T](); err != nil {
		return err
	}
	return a.Free(unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p)))
}

// MakeSlice returns a zeroed []T of length and capacity n in a's memory. T
// must hold no Go pointers. Give it back with FreeSlice.
func MakeSlice[T any](a *Allocator, n int) ([]T, error) {
	if err := checkType[T](); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: %d elements", ErrInvalidSize, n)
	}
	size := unsafe.Sizeof(*new(T))
	if size > 0 && uintptr(n) > uintptr(maxInt)/size {
		return nil, fmt.Errorf("%w: %d elements of %d bytes", ErrOutOfMemory, n, size)
	}
	b, err := a.Calloc(n * int(size))
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), nil
}

const maxInt = int(^uint(0) >> 1)

// FreeSlice gives back a slice from MakeSlice (or a reslice of it that
// keeps its start). FreeSlice(a, nil) does nothing.
func FreeSlice[T any](a *Allocator, s []T) error {
	if s == nil {
		return nil
	}
	if err := checkType[T](); err != nil {
		return err
	}
	// the capacity, not 0: a zero-capacity slice of a block that is not
	// empty is refused (see Free)
	return a.Free(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), uintptr(cap(s))*unsafe.Sizeof(*new(T))))
}
