using System.Buffers.Binary;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Interop;

/// <summary>
/// The Autobahn|Testsuite case groups that matter to a proxy, reproduced with real peers: a raw client speaks exact
/// frames to Sluice's proxy, whose backend is python3-websockets or node <c>ws</c>. Every case runs against both.
/// </summary>
public sealed class ProxyConformanceTests : IAsyncLifetime
{
    private ExternalPeer _python = null!;
    private ExternalPeer _node = null!;
    private TestServer _proxy = null!;

    public static TheoryData<PeerKind> Backends => [PeerKind.Python, PeerKind.Node];

    public async Task InitializeAsync()
    {
        _python = await ExternalPeer.StartServerAsync(PeerKind.Python);
        _node = await ExternalPeer.StartServerAsync(PeerKind.Node);
        _proxy = await TestServer.StartAsync(app =>
        {
            app.MapWebSocketProxy("/python/{**rest}", $"ws://{_python.Authority}/${{params.rest}}");
            app.MapWebSocketProxy("/node/{**rest}", $"ws://{_node.Authority}/${{params.rest}}");
        });
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _python.DisposeAsync();
        await _node.DisposeAsync();
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Framing_TextAndBinaryAroundEveryLengthBoundary_UpToTheLimit(PeerKind backend)
    {
        using var socket = await ConnectAsync(backend, "/echo");
        foreach (var size in new[] { 0, 1, 125, 126, 127, 65535, 65536, 65537, 1024 * 1024 })
        {
            foreach (var opcode in new byte[] { 0x1, 0x2 })
            {
                var payload = opcode == 0x1 ? Encoding.UTF8.GetBytes(new string('é', size / 2) + (size % 2 == 1 ? "x" : string.Empty)) : Enumerable.Range(0, size).Select(i => (byte)i).ToArray();
                await socket.SendFrameAsync(opcode, payload);

                var echoed = await ReadMessageAsync(socket);
                Assert.Equal(opcode, echoed.Opcode);
                Assert.Equal(payload, echoed.Payload);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Fragmentation_ManyTinyFragments_WithPingsBetween_ArriveAsOneMessage(PeerKind backend)
    {
        using var socket = await ConnectAsync(backend, "/echo");
        var text = string.Concat(Enumerable.Range(0, 300).Select(i => "ü✓" + i));
        var bytes = Encoding.UTF8.GetBytes(text);

        // Fragments of 1 to 3 bytes, cutting characters in two; a ping after every tenth fragment.
        var offset = 0;
        var index = 0;
        while (offset < bytes.Length)
        {
            var length = Math.Min(1 + (index % 3), bytes.Length - offset);
            var last = offset + length == bytes.Length;
            await socket.SendFrameAsync(index == 0 ? (byte)0x1 : (byte)0x0, bytes.AsSpan(offset, length), fin: last);
            if (index % 10 == 9)
            {
                await socket.SendFrameAsync(0x9, Encoding.ASCII.GetBytes("p" + index));
            }

            offset += length;
            index++;
        }

        var pongs = 0;
        while (true)
        {
            var frame = await socket.ReadFrameAsync() ?? throw new InvalidOperationException("closed");
            if (frame.Opcode == 0xA)
            {
                pongs++;
                continue;
            }

            var message = await ContinueMessageAsync(socket, frame);
            Assert.Equal(text, Encoding.UTF8.GetString(message.Payload));
            break;
        }

        Assert.Equal(index / 10, pongs);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Utf8_InvalidSequenceSplitAcrossFragments_Closes1007_AndNothingReachesTheBackend(PeerKind backend)
    {
        var tag = Guid.NewGuid().ToString("N");
        using var socket = await ConnectAsync(backend, "/echo/" + tag);

        // 0xF4 0x90 is past U+10FFFF: invalid, but only visible once the second fragment arrives.
        await socket.SendFrameAsync(0x1, [(byte)'o', (byte)'k', 0xF4], fin: false);
        await socket.SendFrameAsync(0x0, [0x90, 0x80, 0x80], fin: true);

        var (code, _) = await socket.ReadCloseAsync();
        Assert.Equal((ushort)1007, code);
        var closed = await PeerOf(backend).WaitForLineAsync($"CLOSED /echo/{tag} ");
        Assert.DoesNotContain(" 1000", closed, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Close_EveryValidCodeAndItsReason_ReachTheBackend(PeerKind backend)
    {
        foreach (var code in new ushort[] { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999 })
        {
            var tag = Guid.NewGuid().ToString("N");
            using var socket = await ConnectAsync(backend, "/echo/" + tag);

            await socket.SendCloseAsync(code, "reason-" + code);

            var (echoed, _) = await socket.ReadCloseAsync();
            Assert.Equal(code, echoed);
            Assert.Equal($"CLOSED /echo/{tag} {code} reason-{code}", await PeerOf(backend).WaitForLineAsync($"CLOSED /echo/{tag} "));
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Close_InvalidCodesAndReasons_Fail1002Or1007(PeerKind backend)
    {
        foreach (var (code, reason, expected) in new (ushort, byte[], ushort)[]
        {
            (0, [], 1002), (999, [], 1002), (1004, [], 1002), (1005, [], 1002), (1006, [], 1002), (1015, [], 1002),
            (2999, [], 1002), (5000, [], 1002), (1000, [0xC3, 0x28], 1007),
        })
        {
            using var socket = await ConnectAsync(backend, "/echo");
            var payload = new byte[2 + reason.Length];
            BinaryPrimitives.WriteUInt16BigEndian(payload, code);
            reason.CopyTo(payload, 2);

            await socket.SendFrameAsync(0x8, payload);

            var (received, _) = await socket.ReadCloseAsync();
            Assert.True(received == expected, $"close {code} got {received}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task PingPong_PingsAreAnsweredWithTheirPayload_UnsolicitedPongsIgnored(PeerKind backend)
    {
        using var socket = await ConnectAsync(backend, "/echo");

        await socket.SendFrameAsync(0xA, "unsolicited"u8);
        await socket.SendFrameAsync(0x9, "ping-payload"u8);
        await socket.SendFrameAsync(0x1, "after"u8);

        var pong = await socket.ReadFrameAsync();
        Assert.Equal((byte)0xA, pong!.Opcode);
        Assert.Equal("ping-payload", pong.Text);
        Assert.Equal("after", (await ReadMessageAsync(socket)).Text);
    }

    private ExternalPeer PeerOf(PeerKind kind) => kind == PeerKind.Python ? _python : _node;

    private async Task<RawWebSocket> ConnectAsync(PeerKind backend, string path)
    {
        var socket = await RawWebSocket.ConnectAsync(_proxy.WebSocketUri((backend == PeerKind.Python ? "/python" : "/node") + path));
        Assert.Equal(101, socket.StatusCode);
        return socket;
    }

    private static async Task<RawWebSocket.ServerFrame> ReadMessageAsync(RawWebSocket socket)
    {
        while (true)
        {
            var frame = await socket.ReadFrameAsync() ?? throw new InvalidOperationException("The proxy closed the connection.");
            if (frame.Opcode is 0x9 or 0xA)
            {
                continue;
            }

            return await ContinueMessageAsync(socket, frame);
        }
    }

    /// <summary>A backend may fragment what it sends; put the message back together.</summary>
    private static async Task<RawWebSocket.ServerFrame> ContinueMessageAsync(RawWebSocket socket, RawWebSocket.ServerFrame first)
    {
        var payload = new List<byte>(first.Payload);
        var frame = first;
        while (!frame.Fin)
        {
            frame = await socket.ReadFrameAsync() ?? throw new InvalidOperationException("closed mid-message");
            if (frame.Opcode == 0x0)
            {
                payload.AddRange(frame.Payload);
            }
        }

        return new RawWebSocket.ServerFrame(true, first.Opcode, [.. payload]);
    }
}
