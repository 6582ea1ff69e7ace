namespace Sluice.Tests.Topics;

public class TopicNameTests
{
    [Theory]
    [InlineData(null, false)]
    [InlineData("", false)]
    [InlineData("a", true)]
    [InlineData("room:lobby/ünïcode ✓", true)]
    public void IsValid_NeedsANonEmptyName(string? name, bool valid) => Assert.Equal(valid, TopicName.IsValid(name));

    [Fact]
    public void IsValid_BoundsTheLength_Inclusively()
    {
        Assert.True(TopicName.IsValid(new string('x', TopicName.DefaultMaxLength)));
        Assert.False(TopicName.IsValid(new string('x', TopicName.DefaultMaxLength + 1)));
        Assert.False(TopicName.IsValid(new string('x', 1_000_000)));
        Assert.True(TopicName.IsValid("abcd", maxLength: 4));
        Assert.Equal("a topic name is at most 4 characters", TopicName.GetError("abcde", maxLength: 4));
    }
}
