using Sluice.Protocol;

namespace Sluice.Tests.Protocol;

/// <summary>
/// While a streamed message is open on a leg, other data messages wait behind it. Replies and topic frames do not
/// take the outbound gate, so a client could keep provoking them while it reads a long download slowly: what waits is
/// bounded, and beyond the bound the leg fails (and with it the connection) instead of growing.
/// </summary>
public class DeferredWriteLimitTests
{
    [Fact]
    public async Task MessagesHeldBehindAStreamedMessage_AreBounded_AndTheLegFailsBeyondTheBound()
    {
        using var writer = new FrameWriter(Stream.Null, mask: false);
        Assert.True(writer.WriteFragment(MessageType.Binary, first: true, final: false, new byte[1024]));

        var reply = new byte[64 * 1024];
        var accepted = 0L;
        while (writer.Write(MessageType.Text, reply))
        {
            accepted += reply.Length;
            Assert.True(accepted <= FrameWriter.MaxDeferredBytes, "more than the bound was held");
        }

        Assert.True(accepted >= FrameWriter.MaxDeferredBytes - (2 * reply.Length), $"only {accepted} bytes were held before the leg failed");
        var failure = await Assert.ThrowsAsync<IOException>(async () => await writer.FlushAsync(CancellationToken.None));
        Assert.Contains("streamed message", failure.Message);
    }

    [Fact]
    public async Task MessagesHeldBehindAStreamedMessage_FollowItsLastFragment_WithinTheBound()
    {
        using var sink = new MemoryStream();
        using var writer = new FrameWriter(sink, mask: false);
        Assert.True(writer.WriteFragment(MessageType.Binary, first: true, final: false, [1, 2, 3]));
        Assert.True(writer.Write(MessageType.Text, "after"u8));
        Assert.True(writer.WriteFragment(MessageType.Binary, first: false, final: true, [4]));
        await writer.FlushAsync(CancellationToken.None);

        // Binary fragment (FIN 0), its continuation (FIN 1), then the text message: nothing interleaved.
        var bytes = sink.ToArray();
        Assert.Equal([0x02, 3, 1, 2, 3, 0x80, 1, 4, 0x81, 5], bytes[..10]);
        Assert.Equal("after"u8.ToArray(), bytes[10..]);
    }
}
