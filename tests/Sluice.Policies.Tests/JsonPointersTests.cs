using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Policies.Json;

namespace Sluice.Policies.Tests;

/// <summary>JSON Pointer reads and edits as the policies use them.</summary>
public class JsonPointersTests
{
    [Theory]
    [InlineData("/a~1b", "slash")]
    [InlineData("/t~0x", "tilde")]
    [InlineData("/~01", "tilde-one")]
    [InlineData("/list/1", "second")]
    [InlineData("/dup", "last")]
    public void TryRead_DecodesEscapes_AndTakesTheLastOfRepeatedNames(string path, string expected)
    {
        using var document = JsonDocument.Parse("""{"a/b":"slash","t~x":"tilde","~1":"tilde-one","list":["first","second"],"dup":"first","dup":"last"}""");

        Assert.True(JsonPointers.TryRead(document.RootElement, JsonPointers.Parse(path, "path"), out var value));
        Assert.Equal(expected, value.GetString());
    }

    [Fact]
    public void Remove_DecodesEscapes()
    {
        var tree = JsonNode.Parse("""{"a/b":1,"t~x":2,"keep":3}""");

        Assert.True(JsonPointers.Remove(tree, JsonPointers.Parse("/a~1b", "path")));
        Assert.True(JsonPointers.Remove(tree, JsonPointers.Parse("/t~0x", "path")));

        Assert.Equal("""{"keep":3}""", tree!.ToJsonString());
    }
}
