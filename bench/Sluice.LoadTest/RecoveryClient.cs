using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.LoadTest;

/// <summary>
/// History recovery at scale: <c>--clients</c> clients that missed <c>--missed</c> messages (published on another
/// node) reconnect at once with <c>since</c>; measured: the time until every one of them has replayed them all and
/// is live, deliveries per second, and the CPU of the node and of redis-server meanwhile.
/// </summary>
internal static class RecoveryClient
{
    private const string Topic = "recovery";

    public static async Task<int> RunAsync(Arguments args)
    {
        var url = new Uri(args.String("url"));
        var publishUrl = new Uri(args.String("publish-url", args.String("url")));
        var clients = args.Int("clients", 1000);
        var missed = args.Int("missed", 1000);
        int? nodePid = args.Flag("pid") ? args.Int("pid") : null;
        int? redisPid = args.Flag("redis-pid") ? args.Int("redis-pid") : null;

        // Where the clients were: the topic's position before they missed anything.
        using var witness = await ConnectAsync(url);
        var ack = await SubscribeAsync(witness, null);
        var since = ack["offset"]!.GetValue<long>();
        var epoch = ack["epoch"]!.GetValue<string>();

        using var publisher = await ConnectAsync(publishUrl);
        for (var i = 0; i < missed; i++)
        {
            await SendAsync(publisher, $$$"""{"op":"publish","topic":"{{{Topic}}}","data":{"n":{{{i}}},"text":"a missed message of about a hundred bytes, as a chat line or a price tick would be"}}""");
        }

        var buffer = new byte[64 * 1024];
        while (Offset(await ReceiveAsync(witness, buffer)) < since + missed)
        {
        }

        var node = ProcStat.Read(nodePid);
        var redis = ProcStat.Read(redisPid);
        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(() => RecoverAsync(url, since, epoch, since + missed))));
        var seconds = clock.Elapsed.TotalSeconds;
        var nodeAfter = ProcStat.Read(nodePid);
        var redisAfter = ProcStat.Read(redisPid);

        Console.WriteLine(JsonSerializer.Serialize(new
        {
            name = args.String("name", "recovery"),
            clients,
            missed,
            recovered = results.Count(r => r.Recovered),
            complete = results.Count(r => r.Complete),
            secondsUntilAllLive = Math.Round(seconds, 3),
            p50Seconds = Math.Round(Percentile(results, 0.5), 3),
            p99Seconds = Math.Round(Percentile(results, 0.99), 3),
            deliveriesPerSecond = Math.Round(results.Sum(r => r.Received) / seconds),
            nodeCpuSeconds = node is { } n && nodeAfter is { } na ? Math.Round(na.CpuSeconds - n.CpuSeconds, 2) : (double?)null,
            redisCpuSeconds = redis is { } r0 && redisAfter is { } r1 ? Math.Round(r1.CpuSeconds - r0.CpuSeconds, 2) : (double?)null,
        }));
        return results.All(r => r.Recovered && r.Complete) ? 0 : 1;
    }

    private static async Task<Result> RecoverAsync(Uri url, long since, string epoch, long last)
    {
        var clock = Stopwatch.StartNew();
        using var socket = await ConnectAsync(url);
        var ack = await SubscribeAsync(socket, (since, epoch));
        var buffer = new byte[64 * 1024];
        var expected = since + 1;
        var received = 0;
        var inOrder = true;
        while (expected <= last)
        {
            var offset = Offset(await ReceiveAsync(socket, buffer));
            inOrder &= offset == expected;
            expected = offset + 1;
            received++;
        }

        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        return new Result(ack["recovered"]!.GetValue<bool>(), inOrder && received == last - since, received, clock.Elapsed.TotalSeconds);
    }

    private static async Task<ClientWebSocket> ConnectAsync(Uri url)
    {
        var socket = new ClientWebSocket();
        await socket.ConnectAsync(url, CancellationToken.None);
        return socket;
    }

    private static async Task<JsonObject> SubscribeAsync(ClientWebSocket socket, (long Offset, string Epoch)? since)
    {
        var request = new JsonObject { ["op"] = "subscribe", ["topic"] = Topic };
        if (since is { } s)
        {
            request["since"] = new JsonObject { ["offset"] = s.Offset, ["epoch"] = s.Epoch };
        }

        await SendAsync(socket, request.ToJsonString());
        var answer = JsonNode.Parse(await ReceiveAsync(socket, new byte[64 * 1024]))!.AsObject();
        return answer["op"]?.GetValue<string>() == "subscribed" ? answer : throw new InvalidOperationException(answer.ToJsonString());
    }

    private static Task SendAsync(ClientWebSocket socket, string text) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    private static async Task<string> ReceiveAsync(ClientWebSocket socket, byte[] buffer)
    {
        var (length, type) = await socket.ReceiveMessageAsync(buffer);
        return type == WebSocketMessageType.Close ? throw new InvalidOperationException("closed by the server") : Encoding.UTF8.GetString(buffer, 0, length);
    }

    private static long Offset(string message)
    {
        // {"op":"message","topic":"recovery","offset":N,...}: no need to parse the whole message.
        var start = message.IndexOf("\"offset\":", StringComparison.Ordinal) + 9;
        var end = message.IndexOf(',', start);
        return long.Parse(message.AsSpan(start, end - start), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static double Percentile(Result[] results, double p)
    {
        var sorted = results.Select(r => r.Seconds).Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
    }

    private sealed record Result(bool Recovered, bool Complete, int Received, double Seconds);
}
