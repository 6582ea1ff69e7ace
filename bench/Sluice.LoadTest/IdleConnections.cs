using System.Net.WebSockets;

namespace Sluice.LoadTest;

/// <summary>Opens --connections idle connections, prints "READY n", holds them --seconds, closes them.</summary>
internal static class IdleConnections
{
    public static async Task<int> RunAsync(Arguments args)
    {
        var url = new Uri(args.String("url"));
        var count = args.Int("connections");
        var sockets = new ClientWebSocket[count];
        var failures = 0;
        using var gate = new SemaphoreSlim(64);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                var socket = new ClientWebSocket();
                socket.Options.KeepAliveInterval = TimeSpan.Zero;
                await socket.ConnectAsync(url, CancellationToken.None);
                sockets[i] = socket;
            }
            catch (Exception ex) when (ex is WebSocketException or HttpRequestException)
            {
                if (Interlocked.Increment(ref failures) == 1)
                {
                    Console.Error.WriteLine($"connect failed: {ex.Message}");
                }
            }
            finally
            {
                gate.Release();
            }
        }));

        Console.WriteLine($"READY {count - failures} {failures}");
        await Task.Delay(TimeSpan.FromSeconds(args.Int("seconds", 10)));
        foreach (var socket in sockets)
        {
            socket?.Abort();
            socket?.Dispose();
        }

        return failures == 0 ? 0 : 1;
    }
}
