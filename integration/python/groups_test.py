#!/usr/bin/env python3
"""Consumer groups with kafka-python's own assignors (range and round-robin).

For each of RangePartitionAssignor and RoundRobinPartitionAssignor: two kafka-python
consumers in one group share a 6-partition topic. The test checks that the assignment has the
shape that assignor computes (range: contiguous halves; round robin: interleaved), that every
record is consumed exactly once with a synchronous commit after each poll, and that a fresh
consumer of the group sees the committed offsets. Exits 0 when all is well, else prints what
differs and exits 1.

    python3 integration/python/groups_test.py --bootstrap 127.0.0.1:9092

Needs: pip install -r integration/python/requirements.txt
"""

import argparse
import sys
import threading
import time
import uuid

PARTITIONS = 6
RECORDS = 300
DEADLINE_S = 60


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def step(msg):
    print(f"-- {msg}", flush=True)


def create_topic(bootstrap, topic):
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)])
    admin.close()
    from kafka import KafkaConsumer

    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    end = time.time() + DEADLINE_S
    while time.time() < end:
        parts = probe.partitions_for_topic(topic)
        if parts is not None and len(parts) == PARTITIONS:
            probe.close()
            return
        time.sleep(0.2)
    fail(f"topic {topic} never showed {PARTITIONS} partitions")


def produce(bootstrap, topic):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % PARTITIONS)
        for i in range(RECORDS)
    ]
    producer.flush()
    out = set()
    for f in futures:
        md = f.get(timeout=30)
        out.add((md.partition, md.offset))
    producer.close()
    return out


class Member(threading.Thread):
    def __init__(self, bootstrap, group, topic, assignor, seen, lock):
        super().__init__(daemon=True)
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            partition_assignment_strategy=[assignor],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        self.consumer.subscribe([topic])
        self.stop = threading.Event()
        self.assigned = []
        self.seen = seen
        self.lock = lock
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                batches = self.consumer.poll(timeout_ms=200)
                got = [(tp.partition, r.offset) for tp, records in batches.items() for r in records]
                if got:
                    self.consumer.commit()
                    with self.lock:
                        self.seen.extend(got)
                self.assigned = sorted(tp.partition for tp in self.consumer.assignment())
        except Exception as e:  # reported by the main thread
            self.error = e
        finally:
            self.consumer.close()


def run_group(bootstrap, name, assignor, expected_shape):
    tag = uuid.uuid4().hex[:6]
    topic = f"py-{name}-{tag}"
    group = f"py-{name}-group-{tag}"
    step(f"{name}: topic {topic}, group {group}")
    create_topic(bootstrap, topic)
    produced = produce(bootstrap, topic)
    seen, lock = [], threading.Lock()
    members = [Member(bootstrap, group, topic, assignor, seen, lock) for _ in range(2)]
    for m in members:
        m.start()
    end = time.time() + DEADLINE_S
    while time.time() < end:
        shapes = sorted(m.assigned for m in members)
        with lock:
            done = set(seen) >= produced
        if shapes == expected_shape and done:
            break
        if any(m.error for m in members):
            fail(f"{name}: consumer failed: {[m.error for m in members]}")
        time.sleep(0.2)
    else:
        fail(f"{name}: assignment {sorted(m.assigned for m in members)} (want {expected_shape}), "
             f"consumed {len(set(seen))} of {len(produced)}")
    for m in members:
        m.stop.set()
    for m in members:
        m.join(timeout=30)
    with lock:
        if len(seen) != len(set(seen)):
            dups = len(seen) - len(set(seen))
            fail(f"{name}: {dups} records consumed twice")
    step(f"{name}: assignment {expected_shape}, {len(seen)} records once each")

    from kafka import KafkaConsumer, TopicPartition

    check = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    for p in range(PARTITIONS):
        committed = check.committed(TopicPartition(topic, p))
        if committed != RECORDS // PARTITIONS:
            fail(f"{name}: committed offset of partition {p} is {committed}, want {RECORDS // PARTITIONS}")
    check.close()
    step(f"{name}: committed offsets read back")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    args = parser.parse_args()
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    run_group(args.bootstrap, "range", RangePartitionAssignor, [[0, 1, 2], [3, 4, 5]])
    run_group(args.bootstrap, "roundrobin", RoundRobinPartitionAssignor, [[0, 2, 4], [1, 3, 5]])
    print("OK", flush=True)


if __name__ == "__main__":
    main()
