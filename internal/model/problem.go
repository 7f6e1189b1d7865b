package model

import (
	"fmt"
	"sort"
)

// ObjectRef names an API object.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Problem is something wrong with one object: the object, the field (a JSON path such as
// spec.blocks[1].cidr) and what is wrong. A Rejected object is left out of the model whole;
// otherwise only the named part is ignored.
type Problem struct {
	Object   ObjectRef `json:"object"`
	Field    string    `json:"field,omitempty"`
	Message  string    `json:"message"`
	Rejected bool      `json:"rejected"`
	// Conflict: the object was rejected for clashing with an older one (overlapping pool
	// blocks, a peer defined twice), not for being wrong in itself.
	Conflict bool `json:"conflict,omitempty"`
}

func (p Problem) Error() string {
	verdict := "ignored"
	if p.Rejected {
		verdict = "rejected"
	}
	if p.Field == "" {
		return fmt.Sprintf("%s %s: %s", p.Object, verdict, p.Message)
	}
	return fmt.Sprintf("%s %s: %s: %s", p.Object, verdict, p.Field, p.Message)
}

// problems collects the Problems of one object while it is checked.
type problems struct {
	ref  ObjectRef
	list []Problem
}

// reject records a problem that leaves the whole object out.
func (ps *problems) reject(field, format string, args ...any) {
	ps.list = append(ps.list, Problem{Object: ps.ref, Field: field, Message: fmt.Sprintf(format, args...), Rejected: true})
}

// warn records a problem whose part of the object is ignored.
func (ps *problems) warn(field, format string, args ...any) {
	ps.list = append(ps.list, Problem{Object: ps.ref, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) rejected() bool {
	for _, p := range ps.list {
		if p.Rejected {
			return true
		}
	}
	return false
}

// sortProblems orders problems by object then field, so Build's output is deterministic.
func sortProblems(list []Problem) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Object != b.Object {
			return a.Object.String() < b.Object.String()
		}
		return a.Field < b.Field
	})
}
