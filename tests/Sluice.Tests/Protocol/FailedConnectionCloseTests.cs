using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;
using Sluice.Tests.Proxy;

namespace Sluice.Tests.Protocol;

/// <summary>
/// A close that Sluice starts because the peer broke a limit or the protocol completes as soon as the peer answers it,
/// even while the peer is still sending the rest of the offending message: the server then ends TCP at once
/// (RFC 6455 7.1.1), instead of when its close timer fires. The timer is set to a minute here, so a server that waited
/// for it would keep the socket open far past the test's bound.
/// </summary>
public class FailedConnectionCloseTests
{
    private static readonly TimeSpan LongCloseTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan WellBeforeTheTimer = TimeSpan.FromSeconds(20);

    public static TheoryData<string, bool> Cases() => new()
    {
        { "whole message over the limit", false },
        { "whole message over the limit", true },
        { "fragments over the limit", false },
        { "fragments over the limit", true },
        { "reserved bit", false },
        { "reserved bit", true },
        { "invalid UTF-8", false },
        { "invalid UTF-8", true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task PeerAnswersTheClose_WhileStillSending_AndTheServerEndsTcpAtOnce(string violation, bool proxied)
    {
        await using var backend = proxied ? await RecordingBackend.StartAsync() : null;
        await using var server = await TestServer.StartAsync(app =>
        {
            if (backend is null)
            {
                app.MapWebSocket("/ws", ws =>
                {
                    ws.ConfigureOptions(o => (o.MaxMessageBytes, o.CloseTimeout) = (1000, LongCloseTimeout));
                    ws.OnMessage((m, c) => m);
                });
            }
            else
            {
                app.MapWebSocketProxy("/ws", $"ws://{backend.Authority}/echo/x", p =>
                    p.ConfigureOptions(o => (o.MaxMessageBytes, o.CloseTimeout) = (1000, LongCloseTimeout)));
            }
        });
        using var client = await RawWebSocket.ConnectAsync(server.WebSocketUri("/ws"));

        var (offending, rest, expectedCode) = violation switch
        {
            "whole message over the limit" => Split(RawWebSocket.Frame(0x2, new byte[60_000]), 8 + 500, 1009),
            "fragments over the limit" => Split(
                [.. RawWebSocket.Frame(0x2, new byte[600], fin: false), .. RawWebSocket.Frame(0x0, new byte[60_000])], 8 + 600 + 8 + 500, 1009),
            "reserved bit" => Split(RawWebSocket.Frame(0x2, new byte[3000], rsv: 0b010), 8 + 100, 1002),
            "invalid UTF-8" => (RawWebSocket.Frame(0x1, [0x68, 0xC3, 0x28]), RawWebSocket.Frame(0x2, new byte[3000]), 1007),
            _ => throw new ArgumentOutOfRangeException(nameof(violation)),
        };

        await client.SendRawAsync(offending);
        Assert.Equal((ushort)expectedCode, (await client.ReadCloseAsync()).Code);

        // The peer had more on the wire when it read the close: the rest of the message, then a ping and its own close.
        await client.SendRawAsync(rest);
        await client.SendFrameAsync(0x9, "still here"u8);
        await client.SendCloseAsync((ushort)expectedCode);

        Assert.True(await client.WaitForTcpCloseAsync(WellBeforeTheTimer), "the server kept TCP open after the close handshake");
    }

    private static (byte[] Offending, byte[] Remainder, int Code) Split(byte[] bytes, int at, int code) => (bytes[..at], bytes[at..], code);
}
