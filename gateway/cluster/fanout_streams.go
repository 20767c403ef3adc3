package cluster

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// Streams mode (FanoutOptions.Mode FanoutStreams): every replica XADDs what
// it relays to one stream, Prefix+"fanout-stream", each entry holding two
// fields, fanoutStreamTopic (the topic) and fanoutStreamEnvelope (the
// envelope, as pub/sub would carry it), and every replica reads the whole
// stream with XREAD from the last id it read. A replica whose link was
// down reads on from there once it is back, so an outage shorter than the
// retention loses nothing; what was trimmed meanwhile shows as holes in
// the origins' sequence numbers (one counter per origin in this mode,
// exact since every replica reads everything) and is counted as Lost.
const (
	fanoutStreamTopic    = "t"
	fanoutStreamEnvelope = "e"
	// fanoutStreamBlock is how long one XREAD waits for entries: the
	// longest a Close waits for the reader, and how stale Watching can be
	// about the link.
	fanoutStreamBlock = time.Second
)

// runStreamReader (streams mode) reads the stream on a client of its own
// and hands the entries of watched topics to the inbound queue. It starts
// from the id of its own start time, not "$", so that what other replicas
// relayed while this one was setting up its link is not missed; after a
// failure it PINGs every fanoutProbeEvery and reads on from its last id
// the moment Redis answers.
func (f *Fanout) runStreamReader() {
	defer f.wg.Done()
	client := f.newSubscriberClient()
	if client == nil {
		return
	}
	defer client.Close()
	f.subBack()
	// The last id before the start time: XREAD returns the entries after
	// it, every one added from the start's millisecond on.
	last := strconv.FormatInt(f.started.UnixMilli()-1, 10) + "-" + strconv.FormatUint(math.MaxUint64, 10)
	for f.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(f.ctx, f.timeout+fanoutStreamBlock)
		cmd := client.B().Xread().Count(fanoutBatch).Block(fanoutStreamBlock.Milliseconds()).Streams().Key(f.streamKey).Id(last).Build()
		res, err := client.Do(ctx, cmd).AsXRead()
		cancel()
		if f.ctx.Err() != nil {
			return
		}
		if err != nil && !rueidis.IsRedisNil(err) { // nil: nothing new within the block
			f.subLost(err)
			if !f.awaitRedis(client) {
				return
			}
			// Up as soon as Redis answers, not once the next XREAD
			// returns (up to fanoutStreamBlock later if nothing comes).
			f.subBack()
			continue
		}
		entries := res[f.streamKey]
		if len(entries) == 0 {
			continue
		}
		f.mu.Lock()
		wanted := make([]bool, len(entries))
		for i, e := range entries {
			topic := e.FieldValues[fanoutStreamTopic]
			_, wanted[i] = f.want[topic]
			wanted[i] = wanted[i] || len(f.pwant) > 0 && f.patternWantedLocked(topic)
		}
		f.mu.Unlock()
		for i, e := range entries {
			f.onStreamEntry(e, wanted[i])
			last = e.ID
		}
	}
}

// onStreamEntry handles one entry of the stream: every other replica's
// entry counts in its origin's sequence, whatever its topic; those of a
// watched topic are decoded in full and queued for Deliver.
func (f *Fanout) onStreamEntry(e rueidis.XRangeEntry, wanted bool) {
	topic, ok1 := e.FieldValues[fanoutStreamTopic]
	data, ok2 := e.FieldValues[fanoutStreamEnvelope]
	if !ok1 || !ok2 {
		f.obs.Dropped(FanoutDropDecodeError)
		f.warn.warn("decode", "fan-out stream entry without topic or envelope", "id", e.ID)
		return
	}
	var m FanoutMessage
	r, err := decodeFanoutHead([]byte(data), &m)
	if err == nil && m.Origin == f.node {
		return // our own
	}
	if err == nil {
		// One origin's entries are in order in the one stream, so a
		// number seen already is a copy (a batch the publisher sent again
		// after an error, though Redis had taken it): counted, not
		// delivered twice.
		if dup := f.count("", &m); dup || !wanted {
			return
		}
		err = decodeFanoutRest(r, &m)
	}
	if err != nil {
		f.obs.Dropped(FanoutDropDecodeError)
		f.warn.warn("decode", "fan-out message dropped", "topic", topic, "bytes", len(data), "error", err)
		return
	}
	m.Topic = topic
	f.enqueue(m)
}
