using System.Buffers.Text;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Sluice.LoadTest;

/// <summary>
/// Fan-out load with the same raw WebSocket client for every server: --subscribers connections subscribe to one
/// topic, one publisher sends --publishes messages of about 128 bytes. Closed loop (default): the next publish when
/// every subscriber has the last one; open loop: --rate publishes per second. Every subscriber checks the sequence
/// numbers, so lost, duplicated and out-of-order deliveries are counted. Prints one JSON line.
/// </summary>
internal static class FanOutClient
{
    private const byte RecordSeparator = 0x1e;

    public static async Task<int> RunAsync(Arguments args)
    {
        var url = new Uri(args.String("url"));
        var kind = args.String("kind");
        var count = args.Int("subscribers");
        var publishes = args.Int("publishes", 200);
        var rate = args.Double("rate", 0);
        int? pid = args.Flag("pid") ? args.Int("pid") : null;
        // --urls: subscribers spread over several nodes in turn (a cluster through Redis); --redis-pid: charge Redis its CPU.
        var urls = args.Flag("urls") ? args.String("urls").Split(',').Select(u => new Uri(u)).ToArray() : [url];
        int? redisPid = args.Flag("redis-pid") ? args.Int("redis-pid") : null;

        var arrivals = new int[publishes];
        var lastArrival = new long[publishes];
        var published = new long[publishes];
        var state = new Counters();
        var subscribers = new ClientWebSocket[count];
        using var gate = new SemaphoreSlim(64);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                subscribers[i] = await ConnectAsync(urls[i % urls.Length], kind, subscriber: true);
            }
            finally
            {
                gate.Release();
            }
        }));
        var receivers = subscribers.Select(s => Task.Run(() => ReceiveAsync(s, kind, arrivals, lastArrival, state))).ToArray();
        // --publish-url: publish on another node (through the Redis backplane) than the subscribers are on.
        using var publisher = await ConnectAsync(new Uri(args.String("publish-url", url.ToString())), kind, subscriber: false);
        await Task.Delay(args.Int("settle-ms", 1000)); // subscriptions settle (SignalR's group joins and Redis subscriptions are asynchronous)

        var window = CpuWindow.Start(pid, backendPid: null);
        var redisBefore = ProcStat.Read(redisPid);
        var clock = Stopwatch.StartNew();
        var interval = rate > 0 ? TimeSpan.FromSeconds(1 / rate) : TimeSpan.Zero;
        for (var seq = 0; seq < publishes; seq++)
        {
            published[seq] = Stopwatch.GetTimestamp();
            await publisher.SendAsync(PublishMessage(kind, seq), WebSocketMessageType.Text, true, CancellationToken.None);
            if (rate > 0)
            {
                var due = interval * (seq + 1);
                if (clock.Elapsed < due)
                {
                    await Task.Delay(due - clock.Elapsed);
                }
            }
            else
            {
                var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 10;
                while (Volatile.Read(ref arrivals[seq]) < count && Stopwatch.GetTimestamp() < deadline)
                {
                    await Task.Yield();
                }
            }
        }

        // Let the last deliveries arrive.
        var end = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 15;
        while (Stopwatch.GetTimestamp() < end && Enumerable.Range(0, publishes).Any(s => Volatile.Read(ref arrivals[s]) < count))
        {
            await Task.Delay(10);
        }

        var elapsed = Stopwatch.GetElapsedTime(0, lastArrival.Max()).TotalSeconds - Stopwatch.GetElapsedTime(0, published[0]).TotalSeconds;
        var cpu = window.Stop();
        var after = ProcStat.Read(pid);
        var redisAfter = ProcStat.Read(redisPid);
        var delivered = arrivals.Sum(a => (long)Math.Min(a, count));
        var times = Enumerable.Range(0, publishes).Where(s => arrivals[s] >= count)
            .Select(s => Stopwatch.GetElapsedTime(published[s], lastArrival[s]).TotalMilliseconds).Order().ToArray();
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            name = args.String("name", kind),
            kind,
            subscribers = count,
            publishes,
            mode = rate > 0 ? $"open {rate}/s" : "closed",
            deliveries = delivered,
            deliveriesPerSecond = Math.Round(delivered / elapsed),
            lastSubscriberP50Ms = times.Length == 0 ? 0 : Math.Round(times[times.Length / 2], 2),
            lastSubscriberP99Ms = times.Length == 0 ? 0 : Math.Round(times[Math.Min(times.Length - 1, (int)(times.Length * 0.99))], 2),
            lost = (long)count * publishes - delivered,
            duplicated = state.Duplicated,
            outOfOrder = state.OutOfOrder,
            serverCpuUsPerDelivery = cpu.ProxyCpuSeconds is { } used && delivered > 0 ? Math.Round(used * 1e6 / delivered, 2) : (double?)null,
            serverPeakRssMiB = after is { } p ? Math.Round(p.PeakRssBytes / 1048576.0, 1) : (double?)null,
            nodes = urls.Length,
            redisCpuSeconds = redisBefore is { } rb && redisAfter is { } ra ? Math.Round(ra.CpuSeconds - rb.CpuSeconds, 2) : (double?)null,
            redisCpuPercent = redisBefore is { } rb2 && redisAfter is { } ra2 && elapsed > 0 ? Math.Round((ra2.CpuSeconds - rb2.CpuSeconds) * 100 / elapsed, 1) : (double?)null,
            // The server's share of its core and the clients' of theirs over the same window (see CpuWindow).
            proxyCpuPercent = cpu.ProxyCpuPercent,
            loadCpuPercent = cpu.LoadCpuPercent,
            bottleneck = cpu.Bottleneck,
            trusted = cpu.Trusted,
        }));

        foreach (var socket in subscribers.Append(publisher))
        {
            socket.Abort();
        }

        return 0;
    }

    private static async Task<ClientWebSocket> ConnectAsync(Uri url, string kind, bool subscriber)
    {
        var socket = new ClientWebSocket();
        socket.Options.KeepAliveInterval = TimeSpan.Zero;
        var target = kind == "bare" ? new Uri(url, subscriber ? "?role=sub" : "?role=pub") : url;
        await socket.ConnectAsync(target, CancellationToken.None);
        if (kind == "signalr")
        {
            // The JSON hub protocol, spoken directly: handshake, then invocations, each ending with 0x1E.
            await socket.SendAsync(Encoding.UTF8.GetBytes("{\"protocol\":\"json\",\"version\":1}\u001e"), WebSocketMessageType.Text, true, CancellationToken.None);
            var buffer = new byte[1024];
            await socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None);
            if (subscriber)
            {
                await socket.SendAsync(Encoding.UTF8.GetBytes("{\"type\":1,\"target\":\"Subscribe\",\"arguments\":[\"t\"]}\u001e"), WebSocketMessageType.Text, true, CancellationToken.None);
            }
        }
        else if (subscriber && kind != "bare")
        {
            await socket.SendAsync("{\"op\":\"subscribe\",\"topic\":\"t\"}"u8.ToArray(), WebSocketMessageType.Text, true, CancellationToken.None);
        }

        return socket;
    }

    private static byte[] PublishMessage(string kind, int seq)
    {
        var data = $"{{\"seq\":{seq},\"pad\":\"{new string('x', 96)}\"}}";
        return Encoding.UTF8.GetBytes(kind switch
        {
            "signalr" => $"{{\"type\":1,\"target\":\"Publish\",\"arguments\":[\"t\",{data}]}}\u001e",
            "bare" => data,
            _ => $"{{\"op\":\"publish\",\"topic\":\"t\",\"data\":{data}}}",
        });
    }

    private static async Task ReceiveAsync(ClientWebSocket socket, string kind, int[] arrivals, long[] lastArrival, Counters state)
    {
        var buffer = new byte[16 * 1024];
        var expected = 0;
        try
        {
            while (true)
            {
                var (length, type) = await socket.ReceiveMessageAsync(buffer);
                if (type == WebSocketMessageType.Close)
                {
                    return;
                }

                var now = Stopwatch.GetTimestamp();
                // A SignalR frame may carry several messages (and pings) separated by 0x1E.
                var span = buffer.AsSpan(0, length);
                while (span.Length > 0)
                {
                    var end = kind == "signalr" ? span.IndexOf(RecordSeparator) : -1;
                    var message = end < 0 ? span : span[..end];
                    span = end < 0 ? [] : span[(end + 1)..];
                    var at = message.IndexOf("\"seq\":"u8);
                    if (at < 0 || !Utf8Parser.TryParse(message[(at + 6)..], out int seq, out _) || (uint)seq >= (uint)arrivals.Length)
                    {
                        continue; // acks, pings
                    }

                    if (seq < expected)
                    {
                        state.Duplicate();
                        continue;
                    }

                    if (seq > expected)
                    {
                        state.Disorder();
                    }

                    expected = seq + 1;
                    Interlocked.Increment(ref arrivals[seq]);
                    long seen;
                    do
                    {
                        seen = Volatile.Read(ref lastArrival[seq]);
                    }
                    while (now > seen && Interlocked.CompareExchange(ref lastArrival[seq], now, seen) != seen);
                }
            }
        }
        catch (WebSocketException)
        {
        }
    }

    private sealed class Counters
    {
        private long _duplicated;
        private long _outOfOrder;

        public long Duplicated => Interlocked.Read(ref _duplicated);

        public long OutOfOrder => Interlocked.Read(ref _outOfOrder);

        public void Duplicate() => Interlocked.Increment(ref _duplicated);

        public void Disorder() => Interlocked.Increment(ref _outOfOrder);
    }
}
