package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Strict decoding of the request bodies.
//
// encoding/json is lenient: it ignores unknown members, matches member names without regard
// to case, lets a later duplicate member win and treats null as "absent". The contract answers
// all of these with 400 invalid_argument, so the three request bodies decode through
// decodeStrict. None of its errors wraps io.EOF: the generated strict handler takes io.EOF to
// mean "no body at all" (the optional body of allocateNumbers).

// UnmarshalJSON decodes the body of putPool strictly: the data must be one JSON object whose
// members are fields of PoolSpec (exact names), each present at most once, none null, each
// of its field's type.
func (s *PoolSpec) UnmarshalJSON(data []byte) error {
	type poolSpec PoolSpec // no methods: no recursion
	var v poolSpec
	if err := decodeStrict(data, &v); err != nil {
		return err
	}
	*s = PoolSpec(v)
	return nil
}

// UnmarshalJSON decodes the body of loadSegment strictly: the data must be one JSON object
// whose members are fields of SegmentSpec (exact names), each present at most once, none null,
// each of its field's type. A missing start or end is left empty for the caller's validation.
func (s *SegmentSpec) UnmarshalJSON(data []byte) error {
	type segmentSpec SegmentSpec
	var v segmentSpec
	if err := decodeStrict(data, &v); err != nil {
		return err
	}
	*s = SegmentSpec(v)
	return nil
}

// UnmarshalJSON decodes the body of allocateNumbers strictly: the data must be one JSON object
// whose only member, if any, is count, an integer (range checks are the caller's).
func (r *AllocateRequest) UnmarshalJSON(data []byte) error {
	type allocateRequest AllocateRequest
	var v allocateRequest
	if err := decodeStrict(data, &v); err != nil {
		return err
	}
	*r = AllocateRequest(v)
	return nil
}

// decodeStrict decodes data into v, a pointer to a struct without methods whose fields carry
// json tags. It fails unless data is exactly one JSON object with no trailing data, whose
// member names are json names of v's fields (compared exactly), each present once and not
// null, each value of its field's type.
func decodeStrict(data []byte, v any) error {
	fields := jsonFields(reflect.TypeOf(v).Elem())

	// Pass 1: the object's shape, member by member, so errors can name the member.
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("body must be a JSON object, not %s", describeToken(tok))
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		name, _ := tok.(string) // inside an object, Token answers a string key or an error
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxError(err)
		}
		typ, ok := fields[name]
		switch {
		case !ok:
			return fmt.Errorf("unknown field %q", name)
		case seen[name]:
			return fmt.Errorf("duplicate field %q", name)
		case string(raw) == "null":
			return fmt.Errorf("field %q: must not be null", name)
		}
		seen[name] = true
		if err := json.Unmarshal(raw, reflect.New(typ).Interface()); err != nil {
			return fmt.Errorf("field %q: %s", name, typeMessage(err, typ))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}

	// Pass 2: the typed decode, unknown fields disallowed; pass 1 has vetted every member.
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return syntaxError(err)
	}
	return nil
}

// jsonFields maps the json names of struct type t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// syntaxError returns err, replacing an io.EOF (data ended too early) by io.ErrUnexpectedEOF.
func syntaxError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("malformed JSON: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("malformed JSON: %w", err)
}

// typeMessage describes why a member's value does not fit typ, without Go type names.
func typeMessage(err error, typ reflect.Type) string {
	want := "a value of another type"
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ.PkgPath() == "time" && typ.Name() == "Time":
		want = "an RFC 3339 date-time string"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		want = "an integer"
	case typ.Kind() == reflect.String:
		want = "a string"
	case typ.Kind() == reflect.Bool:
		want = "a boolean"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("must be %s, got %s", want, te.Value)
	}
	return "must be " + want
}

// describeToken names the kind of JSON value tok starts.
func describeToken(tok json.Token) string {
	switch tok := tok.(type) {
	case json.Delim:
		return "an array"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	default:
		return fmt.Sprintf("%T", tok)
	}
}
