package broker

import (
	"errors"
	"reflect"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// retainedSweepInterval is how often mochi looks for expired retained
// messages. mochi does it every second by copying its whole retained map
// (packets.GetAll): with 10,000 agents that is ~30,000 entries (status,
// desired schedules, reported schedules) copied per second, 13–15 % of the
// server's CPU in the fleet simulator's rollout and policy scenarios. Our
// retained messages never expire (MaximumMessageExpiryInterval is 0, and
// the console publishes them without an expiry), so the sweep only ever
// finds an agent's own retained message published with an expiry, which a
// few minutes late is fine.
const retainedSweepInterval = 10 * time.Minute

// slowRetainedSweep resets mochi's retained-expiry ticker (an unexported
// field of its event loop: mochi has no option for it) to every.
// TestRetainedSweepSlowed fails when a mochi upgrade moves the field.
func slowRetainedSweep(mq *mqtt.Server, every time.Duration) error {
	loop := reflect.ValueOf(mq).Elem().FieldByName("loop")
	if !loop.IsValid() || loop.Kind() != reflect.Pointer || loop.IsNil() {
		return errors.New("broker: mochi's event loop is not where it was")
	}
	f := loop.Elem().FieldByName("retainedExpiry")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*time.Ticker]() {
		return errors.New("broker: mochi's retained expiry ticker is not where it was")
	}
	t := *(**time.Ticker)(unsafe.Pointer(f.UnsafeAddr()))
	if t == nil {
		return errors.New("broker: mochi's retained expiry ticker is not made yet")
	}
	t.Reset(every)
	return nil
}
