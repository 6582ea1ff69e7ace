using System.Text;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Protocol;

/// <summary>
/// RFC 6455 framing against a host-mode echo endpoint, reproducing Autobahn|Testsuite case groups 1-7 with
/// a raw client (the suite itself cannot run here). Case numbers refer to ../shared/conformance/autobahn-cases.txt.
/// </summary>
public sealed class FramingConformanceTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() =>
        _server = await TestServer.StartAsync(app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m)));

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<RawWebSocket> ConnectAsync() => RawWebSocket.ConnectAsync(_server.WebSocketUri("/echo"));

    [Theory] // Cases 1.1.x and 1.2.x
    [InlineData(0x1, 0)]
    [InlineData(0x1, 125)]
    [InlineData(0x1, 126)]
    [InlineData(0x1, 127)]
    [InlineData(0x1, 128)]
    [InlineData(0x1, 65535)]
    [InlineData(0x1, 65536)]
    [InlineData(0x2, 0)]
    [InlineData(0x2, 125)]
    [InlineData(0x2, 126)]
    [InlineData(0x2, 65535)]
    [InlineData(0x2, 65536)]
    public async Task DataFrames_OfBoundarySizes_AreEchoedWhole(byte opcode, int size)
    {
        using var ws = await ConnectAsync();
        var payload = opcode == 0x1 ? Encoding.ASCII.GetBytes(new string('*', size)) : Enumerable.Range(0, size).Select(i => (byte)i).ToArray();

        await ws.SendFrameAsync(opcode, payload);

        var echo = await ws.ReadFrameAsync();
        Assert.Equal((true, opcode), (echo!.Fin, echo.Opcode));
        Assert.Equal(payload, echo.Payload);
    }

    [Fact] // Cases 1.1.8 / 1.2.8: the same message chopped into 997-byte writes
    public async Task Frame_SentInSmallChops_IsReassembled()
    {
        using var ws = await ConnectAsync();
        var payload = Enumerable.Range(0, 65536).Select(i => (byte)i).ToArray();

        await ws.SendRawAsync(RawWebSocket.Frame(0x2, payload), chop: 997);

        Assert.Equal(payload, (await ws.ReadFrameAsync())!.Payload);
    }

    [Theory] // Cases 2.1-2.3
    [InlineData("")]
    [InlineData("Hello, world!")]
    public async Task Ping_IsAnsweredWithPongCarryingItsPayload(string text)
    {
        using var ws = await ConnectAsync();

        await ws.SendFrameAsync(0x9, Encoding.UTF8.GetBytes(text));

        var pong = await ws.ReadFrameAsync();
        Assert.Equal(0xA, pong!.Opcode);
        Assert.Equal(text, pong.Text);
    }

    [Fact] // Case 2.10: many pings, each answered
    public async Task ManyPings_EachGetsAPong()
    {
        using var ws = await ConnectAsync();
        for (var i = 0; i < 10; i++)
        {
            await ws.SendFrameAsync(0x9, Encoding.ASCII.GetBytes($"payload-{i}"));
        }

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal($"payload-{i}", (await ws.ReadFrameAsync())!.Text);
        }
    }

    [Fact] // Case 2.5: a ping with a 126-byte payload is a protocol error
    public async Task Ping_WithOver125Bytes_FailsWith1002()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x9, new byte[126]);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Case 2.6 style: unsolicited pong is ignored
    public async Task UnsolicitedPong_IsIgnored()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0xA, "unsolicited"u8);
        await ws.SendTextAsync("after");
        Assert.Equal("after", (await ws.ReadFrameAsync())!.Text);
    }

    [Theory] // Cases 3.1-3.7: reserved bits without an extension
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(7)]
    public async Task ReservedBits_FailWith1002(byte rsv)
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x1, "x"u8, rsv: rsv);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Theory] // Cases 4.1.x and 4.2.x: reserved opcodes
    [InlineData(0x3)]
    [InlineData(0x7)]
    [InlineData(0xB)]
    [InlineData(0xF)]
    public async Task ReservedOpcodes_FailWith1002(byte opcode)
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(opcode, "x"u8);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Case 5.1: fragmented ping
    public async Task FragmentedControlFrame_FailsWith1002()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x9, "frag"u8, fin: false);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Cases 5.3-5.8: fragments, with a ping between them, in octet-wise chops
    public async Task FragmentedText_WithPingBetween_GetsPongThenWholeMessage()
    {
        using var ws = await ConnectAsync();
        byte[] bytes = [
            .. RawWebSocket.Frame(0x1, "fragment1"u8, fin: false),
            .. RawWebSocket.Frame(0x9, "ping payload"u8),
            .. RawWebSocket.Frame(0x0, "fragment2"u8, fin: true),
        ];

        await ws.SendRawAsync(bytes, chop: 1);

        var pong = await ws.ReadFrameAsync();
        Assert.Equal((0xA, "ping payload"), (pong!.Opcode, pong.Text));
        var message = await ws.ReadFrameAsync();
        Assert.Equal((0x1, "fragment1fragment2"), (message!.Opcode, message.Text));
    }

    [Fact] // Cases 5.9-5.14: continuation with nothing to continue
    public async Task ContinuationWithoutStart_FailsWith1002()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x0, "orphan"u8, fin: true);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Case 5.18: two fragments that both claim to start a message
    public async Task NewMessageBeforeFragmentedOneEnds_FailsWith1002()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x1, "first"u8, fin: false);
        await ws.SendFrameAsync(0x1, "second"u8, fin: true);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Case 6.2.x: valid multi-byte UTF-8 split across fragments at every byte
    public async Task ValidUtf8_SplitMidCharacterAcrossFragments_IsAccepted()
    {
        using var ws = await ConnectAsync();
        var text = "κόσμε ✓ 🎉";
        var bytes = Encoding.UTF8.GetBytes(text);
        var frames = new List<byte>();
        for (var i = 0; i < bytes.Length; i++)
        {
            frames.AddRange(RawWebSocket.Frame(i == 0 ? (byte)0x1 : (byte)0x0, bytes.AsSpan(i, 1), fin: i == bytes.Length - 1));
        }

        await ws.SendRawAsync([.. frames]);

        Assert.Equal(text, (await ws.ReadFrameAsync())!.Text);
    }

    [Theory] // Cases 6.3-6.x: invalid UTF-8, whole or split across fragments
    [InlineData(new byte[] { 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64 }, false)]
    [InlineData(new byte[] { 0xF8, 0x88, 0x80, 0x80, 0x80 }, false)]
    [InlineData(new byte[] { 0xC0, 0xAF }, true)]
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 }, true)]
    public async Task InvalidUtf8Text_FailsWith1007(byte[] invalid, bool fragmented)
    {
        using var ws = await ConnectAsync();
        if (fragmented)
        {
            await ws.SendFrameAsync(0x1, invalid.AsSpan(0, 1), fin: false);
            await ws.SendFrameAsync(0x0, invalid.AsSpan(1), fin: true);
        }
        else
        {
            await ws.SendFrameAsync(0x1, invalid);
        }

        Assert.Equal((ushort)1007, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Cases 7.1.1 and 7.3.3
    public async Task MessageThenClose_EchoesMessage_ThenCloseWithSameCode_ThenTcpClose()
    {
        using var ws = await ConnectAsync();
        await ws.SendTextAsync("last words");
        await ws.SendCloseAsync(1000, "done");

        Assert.Equal("last words", (await ws.ReadFrameAsync())!.Text);
        Assert.Equal(((ushort?)1000, "done"), await ws.ReadCloseAsync());
        Assert.True(await ws.WaitForTcpCloseAsync(TimeSpan.FromSeconds(5)), "the server should close TCP after the close handshake");
    }

    [Fact] // Case 7.3.1: close without a code is answered with an empty close
    public async Task EmptyClose_IsAnsweredWithEmptyClose()
    {
        using var ws = await ConnectAsync();
        await ws.SendCloseAsync(null);
        Assert.Equal(((ushort?)null, string.Empty), await ws.ReadCloseAsync());
    }

    [Fact] // Case 7.3.2
    public async Task CloseWithOneBytePayload_FailsWith1002()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x8, [0x03]);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }

    [Theory] // Cases 7.7.x (valid) and 7.9.x (invalid)
    [InlineData(1000, 1000)]
    [InlineData(1001, 1001)]
    [InlineData(1002, 1002)]
    [InlineData(1003, 1003)]
    [InlineData(1007, 1007)]
    [InlineData(1008, 1008)]
    [InlineData(1009, 1009)]
    [InlineData(1010, 1010)]
    [InlineData(1011, 1011)]
    [InlineData(3000, 3000)]
    [InlineData(3999, 3999)]
    [InlineData(4000, 4000)]
    [InlineData(4999, 4999)]
    [InlineData(0, 1002)]
    [InlineData(999, 1002)]
    [InlineData(1004, 1002)]
    [InlineData(1005, 1002)]
    [InlineData(1006, 1002)]
    [InlineData(1015, 1002)]
    [InlineData(1016, 1002)]
    [InlineData(2000, 1002)]
    [InlineData(2999, 1002)]
    [InlineData(5000, 1002)]
    [InlineData(65535, 1002)]
    public async Task CloseCodes_ValidAreEchoed_InvalidFailWith1002(int sent, int expected)
    {
        using var ws = await ConnectAsync();
        await ws.SendCloseAsync((ushort)sent, "r");
        Assert.Equal((ushort)expected, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Case 7.5.1
    public async Task CloseReasonNotUtf8_FailsWith1007()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x8, [0x03, 0xE8, 0xCE, 0xBA, 0xED, 0xA0, 0x80]);
        Assert.Equal((ushort)1007, (await ws.ReadCloseAsync()).Code);
    }

    [Fact] // Cases 7.1.3 and 7.1.4: after the close, pings get no pong and data is ignored
    public async Task AfterClose_PingsAndDataAreIgnored()
    {
        using var ws = await ConnectAsync();

        // One write: the server may end TCP as soon as it has answered the close, and a second write would then fail.
        byte[] close = [0x03, 0xE8];
        await ws.SendRawAsync([.. RawWebSocket.Frame(0x8, close), .. RawWebSocket.Frame(0x9, "late ping"u8), .. RawWebSocket.Frame(0x1, "late text"u8)]);

        var frame = await ws.ReadFrameAsync();
        Assert.Equal(0x8, frame!.Opcode);
        Assert.True(await ws.WaitForTcpCloseAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact] // RFC 6455 5.1: a client frame must be masked
    public async Task UnmaskedClientFrame_FailsWith1002()
    {
        using var ws = await ConnectAsync();
        await ws.SendFrameAsync(0x1, "not masked"u8, mask: false);
        Assert.Equal((ushort)1002, (await ws.ReadCloseAsync()).Code);
    }
}
