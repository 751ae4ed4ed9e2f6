// End to end against a real `broadcaster serve` with the LINE channel and the LINE emulator:
// create a group, connect a channel, create a draft, estimate, send, watch progress to the end,
// and read errors' ErrorInfo.reason from the grpc-status-details-bin trailer.
//
// By default it starts both as processes of the project's Python environment (../../.venv, or
// BROADCASTER_PYTHON). To use running ones instead, set BROADCASTER_TARGET (host:port),
// BROADCASTER_TOKEN (a token for every merchant) and LINE_EMULATOR_URL (the emulator's base URL,
// whose control API makes a LINE account for the test).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";

import {
  BroadcasterError,
  broadcasts as b,
  channels as c,
  type Clients,
  connect,
  contacts as ct,
  customerGroups as g,
  DOMAIN,
  errorDetails,
  events as e,
  paginate,
  Status,
  STATUS_DETAILS_KEY,
  unary,
} from "../src";

const ROOT = resolve(__dirname, "../../../..");
const TOKEN = "ts-client-test-token-000";
const FOLLOWERS = 12;
const MEMBERS = 8;

interface Live {
  target: string;
  token: string;
  emulatorUrl: string;
  stop(): Promise<void>;
}

function python(): string {
  const venv = join(ROOT, ".venv", "bin", "python");
  return process.env.BROADCASTER_PYTHON ?? (existsSync(venv) ? venv : "python3");
}

/** Start a process that prints one line when it is ready; resolve with it and that line.
 * Its stderr (the logs) goes to `log`. */
function startProcess(
  args: string[],
  env: NodeJS.ProcessEnv,
  log: string,
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(python(), args, { env, stdio: ["ignore", "pipe", openSync(log, "w")] });
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolvePromise({ child, line }));
    child.once("exit", (code) =>
      reject(new Error(`${args.join(" ")} exited with ${code}:\n${readFileSync(log, "utf8")}`)),
    );
    child.once("error", reject);
  });
}

function stopProcess(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolvePromise) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("exit", (code) => {
      clearTimeout(killer);
      resolvePromise(code);
    });
    child.kill("SIGTERM");
  });
}

async function startLive(): Promise<Live> {
  if (process.env.BROADCASTER_TARGET) {
    return {
      target: process.env.BROADCASTER_TARGET,
      token: process.env.BROADCASTER_TOKEN ?? "",
      emulatorUrl: process.env.LINE_EMULATOR_URL ?? "",
      stop: async () => {},
    };
  }
  const work = mkdtempSync(join(tmpdir(), "broadcaster-ts-"));
  const emulator = await startProcess(
    ["-m", "broadcaster_line_emulator", "--port", "0"],
    process.env,
    join(work, "emulator.log"),
  );
  const serverLog = join(work, "serve.log");
  const server = await startProcess(["-m", "broadcaster.cli", "serve"], {
    ...process.env,
    BROADCASTER_DATABASE_URL: `sqlite:///${join(work, "broadcaster.db")}`,
    BROADCASTER_AUTH_TOKENS: `${TOKEN}=*`,
    BROADCASTER_GRPC_LISTEN: "127.0.0.1:0",
    BROADCASTER_HTTP_LISTEN: "127.0.0.1:0",
    BROADCASTER_SECRET_KEY: "ts-client-tests-secret-key-long-enough-0123",
    BROADCASTER_PLUGINS: "line",
    BROADCASTER_PLUGIN_MODULES: "",
    BROADCASTER_LINE_API_BASE: emulator.line.trim(),
  }, serverLog).catch(async (error: unknown) => {
    await stopProcess(emulator.child);
    throw error;
  });
  const target = /serving gRPC on (\S+:\d+)/.exec(server.line)?.[1];
  assert.ok(target, `unexpected first line: ${server.line}`);
  return {
    target,
    token: TOKEN,
    emulatorUrl: emulator.line.trim(),
    stop: async () => {
      const code = await stopProcess(server.child);
      await stopProcess(emulator.child);
      const logged = readFileSync(serverLog, "utf8");
      rmSync(work, { recursive: true, force: true });
      assert.equal(code, 0, `the server did not exit cleanly:\n${logged}`);
      assert.ok(!logged.includes(TOKEN), "the token reached the log");
    },
  };
}

async function emulatorAccount(spec: Record<string, unknown>): Promise<Record<string, string>> {
  const response = await fetch(`${live.emulatorUrl}/_emulator/accounts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(spec),
  });
  assert.equal(response.status, 201);
  return (await response.json()) as Record<string, string>;
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

async function withTimeout<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what()}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function rejection(promise: Promise<unknown>): Promise<BroadcasterError> {
  const error = await promise.then(
    () => assert.fail("the call succeeded"),
    (error: unknown) => error,
  );
  assert.ok(error instanceof BroadcasterError, `not a BroadcasterError: ${error}`);
  return error;
}

let live: Live;
let api: Clients;

before(async () => {
  live = await startLive();
  api = connect(live.target, { token: live.token });
  // Until the server answers a call (any status from the service itself).
  const deadline = Date.now() + 20_000;
  for (;;) {
    const error = await rejection(
      unary(api.customerGroups.getCustomerGroup.bind(api.customerGroups), {
        name: "merchants/m-probe/customerGroups/none",
      }),
    );
    if (error.reason) break;
    assert.ok(Date.now() < deadline, `server not answering: ${error.message}`);
    await sleep(50);
  }
});

after(async () => {
  api?.close();
  await live?.stop();
});

test("errors carry ErrorInfo.reason in the grpc-status-details-bin trailer", async () => {
  const parent = `merchants/ts-${Date.now().toString(36)}`;
  const name = `${parent}/broadcasts/0000000000000`;

  // By hand, from the raw grpc-js error: decode google.rpc.Status, then its ErrorInfo.
  const raw = await new Promise<ServiceError>((done) => {
    api.broadcasts.getBroadcast({ name }, (error) => done(error!));
  });
  assert.equal(raw.code, status.NOT_FOUND);
  const [trailer] = raw.metadata.get(STATUS_DETAILS_KEY);
  assert.ok(trailer instanceof Buffer);
  const rpcStatus = Status.decode(trailer);
  const packed = rpcStatus.details.find((d) => d.typeUrl.endsWith("/google.rpc.ErrorInfo"));
  assert.ok(packed);
  const info = errorDetails.ErrorInfo.decode(packed.value);
  assert.deepEqual([info.reason, info.domain], ["BROADCAST_NOT_FOUND", DOMAIN]);

  // The same through the helper.
  const notFound = await rejection(
    unary(api.broadcasts.getBroadcast.bind(api.broadcasts), { name }),
  );
  assert.deepEqual([notFound.code, notFound.reason], [status.NOT_FOUND, "BROADCAST_NOT_FOUND"]);
  assert.equal(notFound.resourceInfo?.resourceName, name);
  assert.equal(notFound.retryDelayMs, undefined); // calling again would not help

  // A failure that may pass later advises a wait (RetryInfo), as DATABASE_UNAVAILABLE does.
  const advised = new Metadata();
  const retryInfo = errorDetails.RetryInfo.encode({ retryDelay: { seconds: 1, nanos: 5e8 } });
  const packedRetry = {
    typeUrl: "type.googleapis.com/google.rpc.RetryInfo",
    value: Buffer.from(retryInfo.finish()),
  };
  const unavailable = Status.encode({
    code: status.UNAVAILABLE,
    message: "The database cannot be reached right now; retry shortly.",
    details: [packedRetry],
  });
  advised.set(STATUS_DETAILS_KEY, Buffer.from(unavailable.finish()));
  const down = Object.assign(new Error("14 UNAVAILABLE"), {
    code: status.UNAVAILABLE,
    details: "The database cannot be reached right now; retry shortly.",
    metadata: advised,
  });
  assert.equal(new BroadcasterError(down).retryDelayMs, 1500);

  const bad = await rejection(
    unary(
      api.customerGroups.createCustomerGroup.bind(api.customerGroups),
      g.CreateCustomerGroupRequest.fromPartial({ parent, customerGroup: {} }),
    ),
  );
  assert.deepEqual([bad.code, bad.reason], [status.INVALID_ARGUMENT, "INVALID_ARGUMENT"]);
  assert.ok(bad.fields.includes("customer_group.display_name"), bad.fields.join());

  const anonymous = connect(live.target);
  try {
    const missing = await rejection(
      unary(
        anonymous.customerGroups.listCustomerGroups.bind(anonymous.customerGroups),
        g.ListCustomerGroupsRequest.fromPartial({ parent }),
      ),
    );
    assert.deepEqual([missing.code, missing.reason], [status.UNAUTHENTICATED, "TOKEN_MISSING"]);
  } finally {
    anonymous.close();
  }

  // A call's own authorization metadata wins over the client's token.
  const metadata = new Metadata();
  metadata.set("authorization", "Basic abc");
  const malformed = await rejection(
    unary(
      api.customerGroups.listCustomerGroups.bind(api.customerGroups),
      g.ListCustomerGroupsRequest.fromPartial({ parent }),
      {},
      metadata,
    ),
  );
  assert.equal(malformed.reason, "TOKEN_MALFORMED");
});

test("group, channel, draft, estimate, send, watch to the end", { timeout: 120_000 }, async () => {
  const parent = `merchants/ts-${Date.now().toString(36)}`;
  const account = await emulatorAccount({ tier: "verified", followers: FOLLOWERS });

  const group = await unary(
    api.customerGroups.createCustomerGroup.bind(api.customerGroups),
    g.CreateCustomerGroupRequest.fromPartial({
      parent,
      customerGroup: { displayName: "VIP customers" },
      requestId: `vip-${parent}`,
    }),
  );

  const channel = await unary(
    api.channels.createChannel.bind(api.channels),
    c.CreateChannelRequest.fromPartial({
      parent,
      channel: {
        type: "line",
        credentials: {
          channel_access_token: account.accessToken,
          channel_secret: account.channelSecret,
        },
      },
      requestId: `line-${parent}`,
    }),
  );
  assert.equal(channel.tier, c.Channel_Tier.VERIFIED);

  // Connecting started the follower sync: wait for it, then link MEMBERS of the followers to
  // the group's customers.
  assert.ok(channel.lastSync, "the follower sync starts with CreateChannel");
  for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
    const { lastSync } = await unary(api.channels.getChannel.bind(api.channels), {
      name: channel.name,
    });
    assert.notEqual(lastSync?.state, c.ContactSync_State.FAILED);
    if (lastSync?.state === c.ContactSync_State.SUCCEEDED) break;
    assert.ok(Date.now() < deadline, "contact sync did not finish");
  }
  const contacts: ct.Contact[] = [];
  for await (const contact of paginate(
    (r: ct.ListContactsRequest) => unary(api.contacts.listContacts.bind(api.contacts), r),
    ct.ListContactsRequest.fromPartial({ parent: channel.name, pageSize: 5 }),
    (page) => page.contacts,
  )) {
    contacts.push(contact);
  }
  assert.equal(contacts.length, FOLLOWERS);
  for (const [n, contact] of contacts.slice(0, MEMBERS).entries()) {
    await unary(api.contacts.updateContact.bind(api.contacts), {
      contact: ct.Contact.fromPartial({ name: contact.name, customerId: `cust-${n}` }),
      updateMask: ["customer_id"],
    });
  }
  const members = await unary(
    api.customerGroups.addCustomerGroupMembers.bind(api.customerGroups),
    {
      customerGroup: group.name,
      customerIds: Array.from({ length: MEMBERS }, (_, n) => `cust-${n}`),
    },
  );
  assert.equal(members.memberCount, MEMBERS);
  const renamed = await unary(
    api.customerGroups.updateCustomerGroup.bind(api.customerGroups),
    g.UpdateCustomerGroupRequest.fromPartial({
      customerGroup: { name: group.name, description: "spent over 10k" },
      updateMask: ["description"],
    }),
  );
  assert.deepEqual(
    [renamed.displayName, renamed.description],
    ["VIP customers", "spent over 10k"],
  );
  const memberIds: string[] = [];
  for await (const member of paginate(
    (r: g.ListCustomerGroupMembersRequest) =>
      unary(api.customerGroups.listCustomerGroupMembers.bind(api.customerGroups), r),
    g.ListCustomerGroupMembersRequest.fromPartial({ customerGroup: group.name, pageSize: 2 }),
    (page) => page.members,
  )) {
    memberIds.push(member.customerId);
  }
  assert.deepEqual(memberIds, Array.from({ length: MEMBERS }, (_, n) => `cust-${n}`).sort());

  const draft = await unary(
    api.broadcasts.createBroadcast.bind(api.broadcasts),
    b.CreateBroadcastRequest.fromPartial({
      parent,
      broadcast: {
        displayName: "Spring sale",
        channel: channel.name,
        audience: {
          lastInteraction: b.Audience_InteractionWindow.ALL_CONTACTS,
          customerGroups: [group.name],
        },
        messages: [
          { text: { text: "20% off this week" } },
          { sticker: { packageId: "446", stickerId: "1988" } },
        ],
        notificationDisabled: true,
      },
      requestId: `draft-${parent}`,
    }),
  );
  assert.equal(draft.state, b.Broadcast_State.DRAFT);
  // A silent send of a text and a sticker; each bubble's plain-text preview, as a list shows it.
  assert.equal(draft.notificationDisabled, true);
  assert.deepEqual(draft.previews, ["20% off this week", "[Sticker]"]);

  // A test send to one member first: it reaches that contact only, is listed on the draft, and
  // leaves the draft as it was.
  const tried = await unary(
    api.broadcasts.sendTestBroadcast.bind(api.broadcasts),
    b.SendTestBroadcastRequest.fromPartial({
      name: draft.name,
      contacts: [contacts[0].name],
      requestId: `test-${parent}`,
    }),
  );
  assert.deepEqual(
    tried.recipients.map((r) => [r.contact, r.outcome]),
    [[contacts[0].name, b.TestSendRecipient_Outcome.SENT]],
  );
  const tests = await unary(
    api.broadcasts.listTestSends.bind(api.broadcasts),
    b.ListTestSendsRequest.fromPartial({ parent: draft.name }),
  );
  assert.deepEqual(
    tests.testSends.map((t) => t.name),
    [tried.name],
  );
  const untouched = await unary(api.broadcasts.getBroadcast.bind(api.broadcasts), {
    name: draft.name,
  });
  assert.deepEqual([untouched.state, untouched.counters?.total ?? 0], [b.Broadcast_State.DRAFT, 0]);

  const estimate = await unary(
    api.broadcasts.estimateAudience.bind(api.broadcasts),
    b.EstimateAudienceRequest.fromPartial({ parent, name: draft.name }),
  );
  assert.deepEqual(
    [estimate.eligible, estimate.matched, estimate.expectedRecipients],
    [true, MEMBERS, MEMBERS],
  );
  // With a recipient limit the estimate shows both figures.
  const capped = await unary(
    api.broadcasts.estimateAudience.bind(api.broadcasts),
    b.EstimateAudienceRequest.fromPartial({
      parent,
      name: draft.name,
      recipientLimit: { maxRecipients: 2 },
    }),
  );
  assert.deepEqual(
    [capped.expectedRecipients, capped.cappedRecipients, capped.leftOutByLimit],
    [MEMBERS, 2, MEMBERS - 2],
  );

  // Watch the Message Center events from now on while the broadcast goes out.
  const stream = api.events.watchEvents(e.WatchEventsRequest.fromPartial({ parent }));
  const reached = new Set<string>();
  const watched = (async () => {
    try {
      for await (const event of stream as AsyncIterable<e.Event>) {
        if (event.kind === e.Event_Kind.BROADCAST_MESSAGE && event.broadcast === draft.name) {
          reached.add(event.contact);
        }
        if (reached.size === MEMBERS) break;
      }
    } catch (error) {
      throw BroadcasterError.from(error);
    } finally {
      stream.cancel();
    }
  })();
  watched.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile

  const sending = await unary(
    api.broadcasts.sendBroadcast.bind(api.broadcasts),
    b.SendBroadcastRequest.fromPartial({ name: draft.name, requestId: `send-${parent}` }),
  );
  assert.ok([b.Broadcast_State.SENDING, b.Broadcast_State.SENT].includes(sending.state));
  assert.equal(sending.counters?.total, MEMBERS);

  let done: b.Broadcast;
  for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
    done = await unary(api.broadcasts.getBroadcast.bind(api.broadcasts), { name: draft.name });
    if (done.state !== b.Broadcast_State.SENDING) break;
    assert.ok(Date.now() < deadline, `still sending: ${JSON.stringify(done.counters)}`);
  }
  assert.equal(done.state, b.Broadcast_State.SENT);
  assert.deepEqual(
    [done.counters?.total, done.counters?.sent, done.counters?.failed],
    [MEMBERS, MEMBERS, 0],
  );

  await withTimeout(watched, 30_000, () => `only ${reached.size} events arrived`);
  const deliveries: b.Delivery[] = [];
  for await (const delivery of paginate(
    (r: b.ListDeliveriesRequest) => unary(api.broadcasts.listDeliveries.bind(api.broadcasts), r),
    b.ListDeliveriesRequest.fromPartial({ parent: draft.name, pageSize: 3 }),
    (page) => page.deliveries,
  )) {
    deliveries.push(delivery);
  }
  assert.equal(deliveries.length, MEMBERS);
  assert.ok(deliveries.every((d) => d.outcome === b.Delivery_Outcome.SENT));
  assert.deepEqual(new Set(deliveries.map((d) => d.contact)), reached);

  // The admin list: this channel's LINE broadcasts sent in the last hour, last sent first.
  const listed = await unary(
    api.broadcasts.listBroadcasts.bind(api.broadcasts),
    b.ListBroadcastsRequest.fromPartial({
      parent,
      channel: channel.name,
      channelType: "line",
      sendTimeAfter: new Date(Date.now() - 3_600_000),
      orderBy: "send_time desc",
    }),
  );
  assert.deepEqual(
    listed.broadcasts.map((x) => [x.name, x.counters?.leftOutByLimit]),
    [[draft.name, 0]],
  );

  // Its statistics: the singleton under the broadcast. None are read yet (the first read is an
  // hour after the send), so every figure is unset (undefined, never 0) and a reason says why.
  const stats = await unary(
    api.broadcasts.getBroadcastStatistics.bind(api.broadcasts),
    b.GetBroadcastStatisticsRequest.fromPartial({ name: `${draft.name}/statistics` }),
  );
  assert.equal(stats.name, `${draft.name}/statistics`);
  assert.equal(stats.delivered, MEMBERS);
  assert.equal(stats.uniqueImpressions, undefined);
  assert.equal(stats.openRate, undefined);
  assert.ok(["STATISTICS_NOT_YET", "STATISTICS_NOT_SUPPORTED"].includes(stats.unavailableReason));
  const summary0 = listed.broadcasts[0].statisticsSummary;
  assert.equal(summary0?.unavailableReason, stats.unavailableReason);
  assert.equal(summary0?.openRate, undefined);

  // The same events, many to a message: WatchEventBatches from the start of the merchant's feed.
  const batches = api.events.watchEventBatches(e.WatchEventBatchesRequest.fromPartial({ parent }));
  const inBatches = new Set<string>();
  const batched = (async () => {
    try {
      for await (const batch of batches as AsyncIterable<e.WatchEventBatchesResponse>) {
        assert.ok(batch.events.length > 0);
        for (const event of batch.events) {
          if (event.kind === e.Event_Kind.BROADCAST_MESSAGE && event.broadcast === draft.name) {
            inBatches.add(event.contact);
          }
        }
        if (inBatches.size === MEMBERS) break;
      }
    } catch (error) {
      throw BroadcasterError.from(error);
    } finally {
      batches.cancel();
    }
  })();
  await withTimeout(batched, 30_000, () => `only ${inBatches.size} events arrived in batches`);
  assert.deepEqual(inBatches, reached);

  // Only the broadcast's lifecycle, filtered by the server: sending, then sent with its counters.
  const steps = await unary(
    api.events.listEvents.bind(api.events),
    e.ListEventsRequest.fromPartial({
      parent,
      broadcast: draft.name,
      kinds: [e.Event_Kind.BROADCAST_SENDING, e.Event_Kind.BROADCAST_SENT],
    }),
  );
  assert.deepEqual(
    steps.events.map((event) => event.kind),
    [e.Event_Kind.BROADCAST_SENDING, e.Event_Kind.BROADCAST_SENT],
  );
  assert.equal(steps.events[1].counters?.sent, MEMBERS);
  assert.equal(steps.events[1].contact, "");

  const summary = await fetch(
    `${live.emulatorUrl}/_emulator/accounts/${account.channelId}/deliveries/summary`,
  ).then((r) => r.json() as Promise<Record<string, number>>);
  // Every member once, and the member who had the test send twice.
  assert.deepEqual([summary.usersReached, summary.usersReachedMoreThanOnce], [MEMBERS, 1]);

  // A sent broadcast is no draft any more.
  const notDraft = await rejection(
    unary(api.broadcasts.deleteBroadcast.bind(api.broadcasts), { name: draft.name }),
  );
  assert.deepEqual(
    [notDraft.code, notDraft.reason],
    [status.FAILED_PRECONDITION, "BROADCAST_NOT_DRAFT"],
  );
});

test("schedule a draft, refuse a past time, unschedule it", { timeout: 60_000 }, async () => {
  const parent = `merchants/ts-s-${Date.now().toString(36)}`;
  const account = await emulatorAccount({ tier: "verified", followers: 2 });
  const channel = await unary(
    api.channels.createChannel.bind(api.channels),
    c.CreateChannelRequest.fromPartial({
      parent,
      channel: {
        type: "line",
        credentials: {
          channel_access_token: account.accessToken,
          channel_secret: account.channelSecret,
        },
      },
    }),
  );
  const draft = await unary(
    api.broadcasts.createBroadcast.bind(api.broadcasts),
    b.CreateBroadcastRequest.fromPartial({
      parent,
      broadcast: {
        displayName: "Later",
        channel: channel.name,
        audience: { lastInteraction: b.Audience_InteractionWindow.ALL_CONTACTS },
        messages: [{ text: { text: "hi" } }],
      },
    }),
  );
  const past = await rejection(
    unary(
      api.broadcasts.scheduleBroadcast.bind(api.broadcasts),
      b.ScheduleBroadcastRequest.fromPartial({
        name: draft.name,
        scheduleTime: new Date(Date.now() - 5_000),
      }),
    ),
  );
  assert.deepEqual([past.code, past.reason], [status.INVALID_ARGUMENT, "SCHEDULE_TIME_PAST"]);

  const when = new Date(Math.floor(Date.now() / 1000) * 1000 + 3_600_000);
  const scheduled = await unary(
    api.broadcasts.scheduleBroadcast.bind(api.broadcasts),
    b.ScheduleBroadcastRequest.fromPartial({
      name: draft.name,
      scheduleTime: when,
      requestId: `schedule-${parent}`,
    }),
  );
  assert.equal(scheduled.state, b.Broadcast_State.SCHEDULED);
  assert.equal(scheduled.scheduleTime?.getTime(), when.getTime());

  const edit = await rejection(
    unary(api.broadcasts.updateBroadcast.bind(api.broadcasts), {
      broadcast: b.Broadcast.fromPartial({ name: draft.name, displayName: "Edited" }),
      updateMask: ["display_name"],
    }),
  );
  assert.deepEqual([edit.code, edit.reason], [status.FAILED_PRECONDITION, "BROADCAST_NOT_DRAFT"]);

  const unscheduled = await unary(
    api.broadcasts.unscheduleBroadcast.bind(api.broadcasts),
    b.UnscheduleBroadcastRequest.fromPartial({ name: draft.name }),
  );
  assert.equal(unscheduled.state, b.Broadcast_State.DRAFT);
  assert.equal(unscheduled.scheduleTime, undefined);
});
