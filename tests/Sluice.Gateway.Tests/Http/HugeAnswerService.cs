using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// An HTTP service on a raw socket that answers every request 200 with a chunked JSON body of 100 MB. The socket's
/// own backpressure tells how much the client really read: a write blocks once the client stops reading, and fails
/// once it has closed. (A Kestrel service cannot tell: Kestrel discards writes after the client is gone.)
/// </summary>
public sealed class HugeAnswerService : IDisposable
{
    public const long BodyBytes = 100L * 1024 * 1024;

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();

    public HugeAnswerService()
    {
        _listener.Start();
        _ = AcceptAsync();
    }

    public string Url(string path) => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}{path}";

    /// <summary>Completes with the bytes written to the first client before it went away or the body ended.</summary>
    public TaskCompletionSource<long> Written { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                _ = AnswerAsync(client);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task AnswerAsync(TcpClient client)
    {
        long written = 0;
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var received = new StringBuilder();
                var buffer = new byte[8192];
                while (!received.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var n = await stream.ReadAsync(buffer, _stop.Token);
                    if (n == 0)
                    {
                        return;
                    }

                    received.Append(Encoding.ASCII.GetString(buffer, 0, n));
                }

                await stream.WriteAsync(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"), _stop.Token);
                var data = new byte[64 * 1024];
                Array.Fill(data, (byte)' ');
                var head = Encoding.ASCII.GetBytes(data.Length.ToString("x", CultureInfo.InvariantCulture) + "\r\n");
                var tail = "\r\n"u8.ToArray();
                while (written < BodyBytes)
                {
                    await stream.WriteAsync(head, _stop.Token);
                    await stream.WriteAsync(data, _stop.Token);
                    await stream.WriteAsync(tail, _stop.Token);
                    written += data.Length;
                }

                await stream.WriteAsync("0\r\n\r\n"u8.ToArray(), _stop.Token);
            }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
            finally
            {
                Written.TrySetResult(written);
            }
        }
    }
}
