using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Topics;

/// <summary>The gateway's pubsub handler protocol, exactly as the contract writes it.</summary>
public sealed class PubSubProtocolTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() =>
        _server = await TestServer.StartAsync(app => app.MapWebSocket("/topics", ws => ws.UsePubSubProtocol()));

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Subscribe_Publish_Unsubscribe_AsTheContractSays()
    {
        using var ann = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/topics"));
        using var bob = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/topics"));

        await ann.SendTextAsync("""{"op":"subscribe","topic":"T"}""");
        Assert.Equal("""{"op":"subscribed","topic":"T"}""", await ann.ReceiveTextAsync());
        await bob.SendTextAsync("""{"op":"subscribe","topic":"T"}""");
        Assert.Equal("""{"op":"subscribed","topic":"T"}""", await bob.ReceiveTextAsync());

        await ann.SendTextAsync("""{"op":"publish","topic":"T","data":{"text":"héllo","n":[1,2.50,1e400]}}""");
        Assert.Equal("""{"op":"message","topic":"T","data":{"text":"héllo","n":[1,2.50,1e400]}}""", await bob.ReceiveTextAsync());

        await bob.SendTextAsync("""{"op":"unsubscribe","topic":"T"}""");
        Assert.Equal("""{"op":"unsubscribed","topic":"T"}""", await bob.ReceiveTextAsync());
        await ann.SendTextAsync("""{"op":"publish","topic":"T","data":"nobody else"}""");
        await bob.SendTextAsync("""{"op":"publish","topic":"T","data":"to ann"}""");
        Assert.Equal("""{"op":"message","topic":"T","data":"to ann"}""", await ann.ReceiveTextAsync());
    }

    [Theory]
    [InlineData("not json", "a message is a JSON object with \"op\" and \"topic\"")]
    [InlineData("""[1,2]""", "a message is a JSON object with \"op\" and \"topic\"")]
    [InlineData("""{"topic":"T"}""", "\"op\" must be subscribe, unsubscribe or publish")]
    [InlineData("""{"op":"shout","topic":"T"}""", "unknown op 'shout': expected subscribe, unsubscribe or publish")]
    [InlineData("""{"op":"subscribe"}""", "\"topic\" must be a non-empty string of valid Unicode")]
    [InlineData("""{"op":"subscribe","topic":42}""", "\"topic\" must be a non-empty string of valid Unicode")]
    [InlineData("""{"op":"publish","topic":"T"}""", "\"publish\" needs \"data\"")]
    public async Task AnythingElse_GetsTheContractsErrorFrame(string sent, string message)
    {
        using var client = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/topics"));

        await client.SendTextAsync(sent);

        using var error = JsonDocument.Parse(await client.ReceiveTextAsync());
        var body = error.RootElement.GetProperty("error");
        Assert.Equal("pubsub", body.GetProperty("policy").GetString());
        Assert.Equal(400, body.GetProperty("status").GetInt32());
        Assert.Equal(message, body.GetProperty("message").GetString());
    }

    [Fact]
    public async Task BinaryFrame_GetsTheErrorFrame_AndTheConnectionStays()
    {
        using var client = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/topics"));

        await client.SendBinaryAsync([1, 2, 3]);
        Assert.Contains("\"status\":400", await client.ReceiveTextAsync(), StringComparison.Ordinal);
        await client.SendTextAsync("""{"op":"subscribe","topic":"still-open"}""");
        Assert.Equal("""{"op":"subscribed","topic":"still-open"}""", await client.ReceiveTextAsync());
    }
}
