package lb

import (
	"fmt"
	"sort"
)

// slotRange is a run of slots of the shared Maglev array.
type slotRange struct{ base, size uint32 }

// slotAllocator hands out ranges of the Maglev array, first fit; freed ranges merge with their
// neighbours. It is plain data: the Syncer owns it.
type slotAllocator struct {
	total uint32
	free  []slotRange // sorted by base, never adjacent
}

func newSlotAllocator(total uint32) *slotAllocator {
	a := &slotAllocator{total: total}
	if total > 0 {
		a.free = []slotRange{{0, total}}
	}
	return a
}

// alloc takes size slots; false when no free run is large enough.
func (a *slotAllocator) alloc(size uint32) (uint32, bool) {
	for i, r := range a.free {
		if r.size < size {
			continue
		}
		base := r.base
		if r.size == size {
			a.free = append(a.free[:i], a.free[i+1:]...)
		} else {
			a.free[i] = slotRange{r.base + size, r.size - size}
		}
		return base, true
	}
	return 0, false
}

// reserve marks a range in use (read back from the maps after a restart). It fails when the
// range is outside the array or not wholly free.
func (a *slotAllocator) reserve(base, size uint32) error {
	if size == 0 {
		return nil
	}
	for i, r := range a.free {
		if base < r.base || base+size > r.base+r.size || base+size < base {
			continue
		}
		var parts []slotRange
		if base > r.base {
			parts = append(parts, slotRange{r.base, base - r.base})
		}
		if end, rend := base+size, r.base+r.size; end < rend {
			parts = append(parts, slotRange{end, rend - end})
		}
		a.free = append(a.free[:i], append(parts, a.free[i+1:]...)...)
		return nil
	}
	return fmt.Errorf("slots %d..%d are not free", base, base+size-1)
}

// release returns a range.
func (a *slotAllocator) release(base, size uint32) {
	if size == 0 {
		return
	}
	a.free = append(a.free, slotRange{base, size})
	sort.Slice(a.free, func(i, j int) bool { return a.free[i].base < a.free[j].base })
	merged := a.free[:1]
	for _, r := range a.free[1:] {
		last := &merged[len(merged)-1]
		if last.base+last.size == r.base {
			last.size += r.size
			continue
		}
		merged = append(merged, r)
	}
	a.free = merged
}

// available is the number of free slots.
func (a *slotAllocator) available() uint32 {
	var n uint32
	for _, r := range a.free {
		n += r.size
	}
	return n
}
