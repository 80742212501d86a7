package model

import (
	"errors"
	"fmt"
)

// Error codes (the API maps them to HTTP statuses).
const (
	CodeInvalid     = "invalid"      // a field is malformed or out of range
	CodeNotFound    = "not_found"    // no such object
	CodeConflict    = "conflict"     // a duplicate name or key
	CodeCASMismatch = "cas_mismatch" // a compare-and-set index did not match
	CodeInternal    = "internal"     // a bug or an unexpected failure
)

// Error is a rejection of a command or an input. Field names the offending
// field in the JSON spelling ("reals[2].weight", "sync.mcast_group").
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Invalid is a CodeInvalid error on field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound is a CodeNotFound error on field.
func NotFound(field, format string, args ...any) *Error {
	return &Error{Code: CodeNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Conflict is a CodeConflict error on field.
func Conflict(field, format string, args ...any) *Error {
	return &Error{Code: CodeConflict, Field: field, Message: fmt.Sprintf(format, args...)}
}

// CASMismatch says an object's modify_index was have, not want.
func CASMismatch(want, have uint64) *Error {
	return &Error{Code: CodeCASMismatch, Field: "cas",
		Message: fmt.Sprintf("modify_index is %d, not %d: the object changed since it was read", have, want)}
}

// PrefixField returns err with its field placed under prefix ("reals[1]").
func PrefixField(prefix string, err error) error {
	var fe *Error
	if !errors.As(err, &fe) {
		return err
	}
	c := *fe
	if c.Field == "" {
		c.Field = prefix
	} else {
		c.Field = prefix + "." + c.Field
	}
	return &c
}

// AsError returns err as an *Error, wrapping unknown errors as internal.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
