// Moves a partition with kafkajs's admin client (AlterPartitionReassignments) and lists
// reassignments (ListPartitionReassignments), as a Node.js operator tool would. Driven by the
// Rust test step by step over stdin/stdout, one JSON line per step:
//   prints {"step":"ready"}                 once connected; waits for a line on stdin
//   moves, lists, prints {"step":"listed"}  with what was listed; waits for a line
//   lists until nothing is in flight        prints {"step":"done","ms":...}
// Usage: node reassign.js BOOTSTRAP TOPIC PARTITION BROKER_ID
const readline = require('readline');
const { Kafka, logLevel } = require('kafkajs');

// Lines that came before anyone waited for them are kept, not lost.
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
let early = 0;
lines.on('line', () => {
  const next = waiting.shift();
  if (next) next();
  else early += 1;
});
const nextLine = () =>
  new Promise((resolve) => {
    if (early > 0) {
      early -= 1;
      resolve();
    } else {
      waiting.push(resolve);
    }
  });
const say = (obj) => console.log(JSON.stringify(obj));

async function main() {
  const [bootstrap, topic, partitionArg, brokerArg] = process.argv.slice(2);
  const partition = Number(partitionArg);
  const broker = Number(brokerArg);
  const kafka = new Kafka({
    clientId: 'strata-reassign-test',
    brokers: bootstrap.split(','),
    logLevel: logLevel.WARN,
    retry: { retries: 3 },
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.fetchTopicMetadata({ topics: [topic] });
  say({ step: 'ready' });
  await nextLine();

  await admin.alterPartitionReassignments({
    topics: [{ topic, partitionAssignment: [{ partition, replicas: [broker] }] }],
    timeout: 30000,
  });
  const listed = await admin.listPartitionReassignments({
    topics: [{ topic, partitions: [partition] }],
    timeout: 30000,
  });
  say({ step: 'listed', topics: listed.topics });
  await nextLine();

  const started = Date.now();
  for (;;) {
    const now = await admin.listPartitionReassignments({ timeout: 30000 });
    if (now.topics.every((t) => t.partitions.length === 0)) break;
    if (Date.now() - started > 30000) throw new Error(`still in flight: ${JSON.stringify(now)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  say({ step: 'done', ms: Date.now() - started });
  await admin.disconnect();
  lines.close();
}

main().catch((e) => {
  console.error(`reassign.js: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
