package relaynode

import (
	"reflect"
	"strconv"
	"time"
)

// LimitStatus is one effective limit on the status page: a numeric or
// duration field of Config (the embedded actors.Limits included) and the
// value the node runs with, defaults applied.
type LimitStatus struct {
	// Name is the Config field, e.g. "MaxHeaderBytes".
	Name string `json:"name"`
	// Value is the field's value in its flag form: "8192", "10s", "20000";
	// "0s" and "0" for the pair limits that are off.
	Value string `json:"value"`
}

var durationType = reflect.TypeFor[time.Duration]()

// effectiveLimits lists every int, int64, float64 and time.Duration field
// of c, in declaration order, with the embedded actors.Limits in its place.
// It reads the fields by reflection so that a limit added to Config is on
// the status page without another list to keep.
func effectiveLimits(c *Config) []LimitStatus {
	var out []LimitStatus
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f, fv := t.Field(i), v.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(fv)
				continue
			}
			var s string
			switch {
			case f.Type == durationType:
				s = time.Duration(fv.Int()).String()
			case f.Type.Kind() == reflect.Int, f.Type.Kind() == reflect.Int64:
				s = strconv.FormatInt(fv.Int(), 10)
			case f.Type.Kind() == reflect.Float64:
				s = strconv.FormatFloat(fv.Float(), 'g', -1, 64)
			default:
				continue
			}
			out = append(out, LimitStatus{Name: f.Name, Value: s})
		}
	}
	walk(reflect.ValueOf(c).Elem())
	return out
}
