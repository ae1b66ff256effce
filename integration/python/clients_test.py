#!/usr/bin/env python3
"""Drives a Kafka-compatible cluster with the two common Python clients.

kafka-python (pure Python) and confluent-kafka (librdkafka) each create a topic through
their admin client, produce keyed messages (compressed: gzip and snappy from kafka-python,
lz4 and zstd from confluent-kafka) and read back, with assign() only (no consumer groups), what
both libraries wrote. Every check compares bytes. Exits 0 when all is well, else prints
what differs and exits 1.

    python3 integration/python/clients_test.py --bootstrap 127.0.0.1:9092

Needs: pip install -r integration/python/requirements.txt
"""

import argparse
import sys
import time
import uuid

DEADLINE_S = 120
PROBLEMS = []


def fail(msg):
    """A failure after which the run cannot go on."""
    for p in PROBLEMS:
        print(f"FAIL: {p}", file=sys.stderr, flush=True)
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def problem(msg):
    """A failure the run can go on after; reported at the end (exit 1)."""
    print(f"problem: {msg}", flush=True)
    PROBLEMS.append(msg)


def step(msg):
    print(f"-- {msg}", flush=True)


def expected_messages(tag, n):
    return [(f"{tag}-key-{i % 37}".encode(), f"{tag} value {i} ".encode() * (1 + i % 9)) for i in range(n)]


def wait_for_topic_ck(admin, topic, partitions):
    """Waits until confluent-kafka's metadata shows every partition with a leader."""
    end = time.time() + 60
    last = None
    while time.time() < end:
        md = admin.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 and p.error is None for p in t.partitions.values()
        ):
            return
        last = t
        time.sleep(0.2)
    fail(f"topic {topic} never had {partitions} led partitions in metadata: {last}")


def create_topics(bootstrap, ck_topic, kp_topic):
    from confluent_kafka.admin import AdminClient, NewTopic as CkNewTopic
    from kafka.admin import KafkaAdminClient, NewTopic as KpNewTopic

    step(f"confluent-kafka AdminClient creates {ck_topic} (3 partitions)")
    admin = AdminClient(ck_config(bootstrap, {}))
    futures = admin.create_topics([CkNewTopic(ck_topic, num_partitions=3, replication_factor=-1)], request_timeout=30)
    try:
        futures[ck_topic].result(timeout=60)
    except Exception as e:  # noqa: BLE001 - report whatever the client raised
        fail(f"confluent-kafka create_topics({ck_topic}): {e!r}")
    wait_for_topic_ck(admin, ck_topic, 3)

    step(f"kafka-python KafkaAdminClient creates {kp_topic} (2 partitions)")
    try:
        kadmin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="strata-py-admin", request_timeout_ms=30000)
        kadmin.create_topics([KpNewTopic(kp_topic, num_partitions=2, replication_factor=-1)], timeout_ms=30000)
    except Exception as e:  # noqa: BLE001
        fail(f"kafka-python create_topics({kp_topic}): {e!r}")
    wait_for_topic_ck(admin, kp_topic, 2)
    # list_topics asks Metadata v8 with include_*_authorized_operations=true and parses the
    # authorized-operations bit fields it gets back.
    try:
        listed = kadmin.list_topics()
        if kp_topic not in listed or ck_topic not in listed:
            problem(f"kafka-python list_topics() = {listed}, lacks {ck_topic} or {kp_topic}")
    except Exception as e:  # noqa: BLE001
        problem(f"kafka-python KafkaAdminClient.list_topics(): {e!r}")
    try:
        kadmin.close()
    except Exception:  # noqa: BLE001
        pass
    return admin


def ck_config(bootstrap, settings):
    """confluent-kafka settings: the cluster's bootstrap over IPv4 (as its brokers listen),
    then `settings`."""
    return {"bootstrap.servers": bootstrap, "broker.address.family": "v4", **settings}


def produce_ck(bootstrap, topic, messages, codec):
    from confluent_kafka import Producer

    step(f"confluent-kafka produces {len(messages)} messages to {topic} ({codec}, acks=all)")
    p = Producer(ck_config(bootstrap, {
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 10,
    }))
    placed = {}
    errors = []

    def report(err, msg, i):
        if err is not None:
            errors.append((i, err))
        else:
            placed[(msg.partition(), msg.offset())] = i

    for i, (k, v) in enumerate(messages):
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=lambda err, msg, i=i: report(err, msg, i))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(60)
    if left:
        fail(f"confluent-kafka: {left} messages to {topic} not delivered within 60 s")
    if errors:
        fail(f"confluent-kafka: {len(errors)} delivery errors to {topic}, first {errors[:3]}")
    if len(placed) != len(messages):
        fail(f"confluent-kafka: {len(placed)} distinct (partition, offset) for {len(messages)} messages to {topic}")
    return placed


def produce_kp(bootstrap, topic, messages, codec):
    from kafka import KafkaProducer

    step(f"kafka-python produces {len(messages)} messages to {topic} ({codec}, acks=all)")
    try:
        p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", compression_type=codec, linger_ms=10,
                          max_in_flight_requests_per_connection=1, request_timeout_ms=30000)
        futures = [p.send(topic, key=k, value=v) for (k, v) in messages]
        p.flush(timeout=60)
        placed = {}
        for i, f in enumerate(futures):
            md = f.get(timeout=60)
            placed[(md.partition, md.offset)] = i
        p.close()
    except Exception as e:  # noqa: BLE001
        fail(f"kafka-python produce to {topic}: {e!r}")
    if len(placed) != len(messages):
        fail(f"kafka-python: {len(placed)} distinct (partition, offset) for {len(messages)} messages to {topic}")
    return placed


def check(reader, topic, got, placed, messages):
    """got: {(partition, offset): (key, value)} as read; placed: {(p, o): index}."""
    if set(got) != set(placed):
        missing = sorted(set(placed) - set(got))[:5]
        extra = sorted(set(got) - set(placed))[:5]
        fail(f"{reader} reading {topic}: {len(got)} records, {len(placed)} produced; missing {missing}, unexpected {extra}")
    for pos, i in placed.items():
        if got[pos] != messages[i]:
            fail(f"{reader} reading {topic}: record at {pos} is {got[pos]!r:.120}, message {i} sent was {messages[i]!r:.120}")


def consume_ck(bootstrap, topic, partitions, count):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    step(f"confluent-kafka reads {topic} from the beginning (assign)")
    c = Consumer(ck_config(bootstrap, {
        "group.id": "strata-py-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }))
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = {}
    end = time.time() + DEADLINE_S
    while len(got) < count and time.time() < end:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"confluent-kafka consumer error on {topic}: {m.error()}")
        if (m.partition(), m.offset()) in got:
            fail(f"confluent-kafka read {topic} {m.partition()}/{m.offset()} twice")
        got[(m.partition(), m.offset())] = (m.key(), m.value())
    lows_highs = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)]
    c.close()
    if len(got) < count:
        fail(f"confluent-kafka read {len(got)} of {count} records of {topic} in {DEADLINE_S} s; watermarks {lows_highs}")
    return got


def consume_kp(bootstrap, topic, partitions, count):
    from kafka import KafkaConsumer, TopicPartition

    step(f"kafka-python reads {topic} from the beginning (assign, no group)")
    try:
        c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
                          auto_offset_reset="earliest", request_timeout_ms=30000)
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = {}
        end = time.time() + DEADLINE_S
        while len(got) < count and time.time() < end:
            for tp, records in c.poll(timeout_ms=500).items():
                for r in records:
                    if (tp.partition, r.offset) in got:
                        fail(f"kafka-python read {topic} {tp.partition}/{r.offset} twice")
                    got[(tp.partition, r.offset)] = (r.key, r.value)
        ends = c.end_offsets(tps)
        begins = c.beginning_offsets(tps)
        c.close()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail(f"kafka-python consume {topic}: {e!r}")
    if len(got) < count:
        fail(f"kafka-python read {len(got)} of {count} records of {topic} in {DEADLINE_S} s")
    total = sum(ends[tp] - begins[tp] for tp in ends)
    if total != count:
        fail(f"kafka-python: ListOffsets says {topic} holds {total} records (begin {begins}, end {ends}), {count} were produced")
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092", help="comma-separated host:port list")
    ap.add_argument("--messages", type=int, default=1000)
    args = ap.parse_args()

    try:
        import confluent_kafka
        import kafka
    except ImportError as e:
        fail(f"{e}: pip install -r integration/python/requirements.txt")
    print(f"kafka-python {kafka.__version__}, confluent-kafka {confluent_kafka.version()[0]} "
          f"(librdkafka {confluent_kafka.libversion()[0]}), bootstrap {args.bootstrap}", flush=True)

    run = uuid.uuid4().hex[:8]
    ck_topic, kp_topic = f"py-ck-{run}", f"py-kp-{run}"
    create_topics(args.bootstrap, ck_topic, kp_topic)

    n = args.messages
    ck_msgs = expected_messages("ck", n) + expected_messages("ck-zstd", n // 2)
    kp_msgs = expected_messages("kp", n)
    placed_ck = produce_ck(args.bootstrap, ck_topic, ck_msgs[:n], "lz4")
    placed_ck.update({pos: i + n for pos, i in produce_ck(args.bootstrap, ck_topic, ck_msgs[n:], "zstd").items()})
    kp_msgs += expected_messages("kp-snappy", n // 4)
    placed_kp = produce_kp(args.bootstrap, kp_topic, kp_msgs[:n], "gzip")
    placed_kp.update({pos: i + n for pos, i in produce_kp(args.bootstrap, kp_topic, kp_msgs[n:], "snappy").items()})
    # confluent-kafka also writes into kafka-python's topic, uncompressed.
    extra = expected_messages("ck-plain", n // 4)
    placed_mix = produce_ck(args.bootstrap, kp_topic, extra, "none")
    kp_all = kp_msgs + extra
    placed_kp.update({pos: i + len(kp_msgs) for pos, i in placed_mix.items()})

    for topic, parts, placed, msgs in [(ck_topic, 3, placed_ck, ck_msgs), (kp_topic, 2, placed_kp, kp_all)]:
        check("confluent-kafka", topic, consume_ck(args.bootstrap, topic, parts, len(placed)), placed, msgs)
        check("kafka-python", topic, consume_kp(args.bootstrap, topic, parts, len(placed)), placed, msgs)

    if PROBLEMS:
        for p in PROBLEMS:
            print(f"FAIL: {p}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"OK: {len(placed_ck)} + {len(placed_kp)} records produced and read back by both libraries", flush=True)


if __name__ == "__main__":
    main()
